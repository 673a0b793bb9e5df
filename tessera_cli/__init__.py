"""The ``tessera`` command: ``demo``, ``inspect``, ``inventory``, ``replay``, ``config check`` and
``fake-nvml``, with their tables and pictures. It sits above everything else (it runs the embedded
cluster for the demo and reads the extender's placement model for inspect); nothing imports it.
Run it as ``tessera ...`` (``tessera_cli.main:main``) or ``kubectl tessera ...``."""
