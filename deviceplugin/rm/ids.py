"""Device IDs as the kubelet sees them (at most 63 characters, see ARCHITECTURE.md).

- ``nvidia.com/gpu``: the GPU's UUID; ``nvidia.com/mig-<profile>``: the MIG instance's UUID;
- shares: ``<GPU-UUID>::core::<n>`` (mps-core, n 0..99), ``<GPU-UUID>::mem::<n>`` (mps-memory, one per
  whole GiB), ``<GPU-UUID>::ts::<n>`` (gpu.shared, one per time-slice replica).
"""

from __future__ import annotations

CORE, MEM, TS = "core", "mem", "ts"
MAX_ID_LENGTH = 63
_SEP = "::"


def share_id(gpu_uuid: str, kind: str, n: int) -> str:
    """``GPU-...::core::7``."""
    return f"{gpu_uuid}{_SEP}{kind}{_SEP}{n}"


def gpu_of(device_id: str) -> str:
    """The GPU UUID a share ID belongs to (the ID itself for whole GPUs and MIG instances)."""
    cut = device_id.find(_SEP)
    return device_id if cut < 0 else device_id[:cut]


def parse_share(device_id: str) -> tuple[str, str, int] | None:
    """``(gpu uuid, kind, n)`` for a share ID, None for anything else."""
    parts = device_id.split(_SEP)
    if len(parts) != 3 or parts[1] not in (CORE, MEM, TS) or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])
