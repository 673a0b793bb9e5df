"""Opaque NVML handles for fake devices, GPU instances, event sets and GPM samples.

Real handles are pointers the driver owns; the fake makes pointers of the right pynvml types
from numbers that say what they point at. Nothing ever dereferences them.
"""

from __future__ import annotations

import ctypes

import pynvml

_DEVICE_BASE = 0x7E55_0000_0000
_GI_BASE = 0x7E56_0000_0000
_EVENT_SET_BASE = 0x7E57_0000_0000
_GPM_SAMPLE_BASE = 0x7E58_0000_0000
_CI_BASE = 0x7E59_0000_0000
_MASK = 0xFFFF_FFFF


def pointer_value(handle) -> int | None:
    """The address inside a pynvml handle (a ctypes pointer), or None for a NULL one."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return None


def _make(kind, value: int):
    return ctypes.cast(ctypes.c_void_p(value), kind)


def device_handle(gpu_index: int, mig_index: int | None = None):
    """The handle of a GPU, or of its ``mig_index``-th MIG device."""
    return _make(pynvml.c_nvmlDevice_t, _DEVICE_BASE | (gpu_index << 8) | (0 if mig_index is None else mig_index + 1))


def decode_device(handle) -> tuple[int, int | None] | None:
    """``(gpu index, MIG device index or None)`` for a fake device handle, None when it is not one."""
    value = pointer_value(handle)
    if value is None or value & ~_MASK != _DEVICE_BASE:
        return None
    low = value & 0xFF
    return (value & _MASK) >> 8, (low - 1 if low else None)


def gpu_instance_handle(gpu_index: int, gpu_instance_id: int):
    """The handle of a MIG GPU instance."""
    return _make(pynvml.c_nvmlGpuInstance_t, _GI_BASE | (gpu_index << 8) | gpu_instance_id)


def decode_gpu_instance(handle) -> tuple[int, int] | None:
    """``(gpu index, GPU-instance id)`` for a fake GPU-instance handle."""
    value = pointer_value(handle)
    if value is None or value & ~_MASK != _GI_BASE:
        return None
    return (value & _MASK) >> 8, value & 0xFF


def compute_instance_handle(gpu_index: int, gpu_instance_id: int, compute_instance_id: int):
    """The handle of a MIG compute instance."""
    return _make(pynvml.c_nvmlComputeInstance_t,
                 _CI_BASE | (gpu_index << 16) | (gpu_instance_id << 8) | compute_instance_id)


def decode_compute_instance(handle) -> tuple[int, int, int] | None:
    """``(gpu index, GPU-instance id, compute-instance id)`` for a fake compute-instance handle."""
    value = pointer_value(handle)
    if value is None or value & ~_MASK != _CI_BASE:
        return None
    return (value & _MASK) >> 16, (value >> 8) & 0xFF, value & 0xFF


def event_set_handle(number: int):
    """The handle of the ``number``-th event set."""
    return _make(pynvml.c_nvmlEventSet_t, _EVENT_SET_BASE | number)


def decode_event_set(handle) -> int | None:
    """The number of a fake event set."""
    value = pointer_value(handle)
    if value is None or value & ~_MASK != _EVENT_SET_BASE:
        return None
    return value & _MASK


def gpm_sample_handle(number: int):
    """The handle of the ``number``-th GPM sample buffer."""
    return _make(pynvml.c_nvmlGpmSample_t, _GPM_SAMPLE_BASE | number)


def decode_gpm_sample(handle) -> int | None:
    """The number of a fake GPM sample buffer."""
    value = pointer_value(handle)
    if value is None or value & ~_MASK != _GPM_SAMPLE_BASE:
        return None
    return value & _MASK
