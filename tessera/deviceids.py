"""The device-ID grammar: how the kubelet names what Tessera advertises (at most 63 characters, see
ARCHITECTURE.md, "Resources and units"). The one place that spells it; standard library only (the
OCI hook imports it through ``tessera.grant``).

- ``nvidia.com/gpu``: the GPU's UUID; ``nvidia.com/mig-<profile>``: the MIG instance's UUID;
- shares: ``<GPU-UUID>::core::<n>`` (mps-core, n 0..99), ``<GPU-UUID>::mem::<n>`` (mps-memory, one per
  whole GiB), ``<GPU-UUID>::ts::<n>`` (gpu.shared, one per time-slice replica).

    core_id("GPU-a", 7)            -> "GPU-a::core::7"
    parse_share("GPU-a::mem::3")   -> ShareId("GPU-a", "mem", 3)
    gpu_of("GPU-a::ts::1")         -> "GPU-a";   gpu_of("MIG-b") -> "MIG-b"
"""

from __future__ import annotations

from collections import namedtuple  # not typing.NamedTuple: typing costs the hook 3-7 ms per container start

CORE, MEM, TS = "core", "mem", "ts"
SHARE_KINDS = (CORE, MEM, TS)
MAX_ID_LENGTH = 63
_SEP = "::"


class DeviceIdError(ValueError):
    """A device ID that is not a share ID of this grammar; the message says why in one line."""


class ShareId(namedtuple("ShareId", ("gpu_uuid", "kind", "unit"))):
    """A share's device ID, read: the GPU it is on (``gpu_uuid``, str), its kind (``kind``: core, mem, ts)
    and its unit number (``unit``, int)."""

    __slots__ = ()


def share_id(gpu_uuid: str, kind: str, n: int) -> str:
    """``GPU-...::core::7``; DeviceIdError for an unknown kind, a negative unit or an empty UUID."""
    if kind not in SHARE_KINDS or n < 0 or not gpu_uuid or _SEP in gpu_uuid:
        raise DeviceIdError(f"cannot spell a share ID from {gpu_uuid!r}, {kind!r}, {n!r}")
    return f"{gpu_uuid}{_SEP}{kind}{_SEP}{n}"


def core_id(gpu_uuid: str, n: int) -> str:
    """The device ID of core unit ``n`` (1 % of the SMs) of an MPS GPU."""
    return f"{gpu_uuid}{_SEP}{CORE}{_SEP}{n}"


def mem_id(gpu_uuid: str, n: int) -> str:
    """The device ID of GiB ``n`` of an MPS GPU."""
    return f"{gpu_uuid}{_SEP}{MEM}{_SEP}{n}"


def ts_id(gpu_uuid: str, n: int) -> str:
    """The device ID of time-slice replica ``n`` of a GPU."""
    return f"{gpu_uuid}{_SEP}{TS}{_SEP}{n}"


def gpu_of(device_id: str) -> str:
    """The GPU UUID a share ID belongs to (the ID itself for whole GPUs and MIG instances)."""
    cut = device_id.find(_SEP)
    return device_id if cut < 0 else device_id[:cut]


def is_share(device_id: str, kind: str) -> bool:
    """Whether ``device_id`` spells a share of ``kind`` (core, mem or ts)."""
    return f"{_SEP}{kind}{_SEP}" in device_id


def parse_share(device_id: str) -> ShareId | None:
    """``(gpu uuid, kind, n)`` for a share ID, None for anything else (a GPU or MIG UUID)."""
    parts = device_id.split(_SEP)
    if len(parts) != 3 or not parts[0] or parts[1] not in SHARE_KINDS or not parts[2].isdigit():
        return None
    return ShareId(parts[0], parts[1], int(parts[2]))


def read_share(device_id: object) -> ShareId:
    """The share a device ID names; DeviceIdError (one line) when it is not ``<uuid>::<kind>::<n>``."""
    if not isinstance(device_id, str):
        raise DeviceIdError(f"device ID {device_id!r} is not a string")
    share = parse_share(device_id)
    if share is None:
        raise DeviceIdError(f"device ID {device_id!r} is not <GPU-UUID>::core|mem|ts::<n>")
    return share


def unit_of(device_id: str) -> int:
    """The unit number of a share ID (``GPU-a::core::7`` -> 7); DeviceIdError for anything else."""
    return read_share(device_id).unit
