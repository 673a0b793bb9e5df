"""The ``tessera`` command: ``demo``, ``inspect``, ``inventory``, ``replay``, ``config check`` and
``fake-nvml``, with their tables and pictures. It sits above everything else (it runs the embedded
cluster for the demo and reads the extender's placement model for inspect); nothing imports it.
Run it as ``tessera ...`` (``tessera_cli.main:main``) or ``kubectl tessera ...``.

Public names: :func:`run_demo`, :func:`inspect_cluster` (what ``tessera inspect`` shows, as data) and
:class:`InspectError`, :func:`print_inventory`.
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "run_demo": "tessera_cli.demo", "inspect_cluster": "tessera_cli.inspect", "InspectError": "tessera_cli.inspect",
    "print_inventory": "tessera_cli.inventory_table",
})
