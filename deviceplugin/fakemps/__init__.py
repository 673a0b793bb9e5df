"""A fake ``nvidia-cuda-mps-control`` for CPU machines; point ``--mps-control-binary`` at :data:`CONTROL`."""

from pathlib import Path

CONTROL = str(Path(__file__).with_name("control.py"))
