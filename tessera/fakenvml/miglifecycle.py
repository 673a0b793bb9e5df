"""The fake NVML functions that make and remove MIG instances at run time.

As on a real GPU in MIG mode: a GPU instance is made with a profile id (the ``id`` of
``nvmlDeviceGetGpuInstanceProfileInfo``, not the profile index) at a placement
``nvmlDeviceGetGpuInstancePossiblePlacements`` lists; it becomes a MIG device (with a UUID) once a
compute instance is made in it; the compute instance goes before its GPU instance; an instance whose
memory slices are taken fails with ``INSUFFICIENT_RESOURCES``, one still running processes with
``IN_USE``. The change reaches every process of the node through its control file
(:mod:`tessera.fakenvml.migstate`). One compute instance per GPU instance, spanning it, is all the fake
makes (the full-slice compute profile); other compute profiles answer ``NOT_SUPPORTED``.
"""

from __future__ import annotations

import ctypes
import uuid as uuidlib

import pynvml

from tessera.fakenvml.calls import nvml_call, nvml_error
from tessera.fakenvml.catalog import MigProfile
from tessera.fakenvml.handles import compute_instance_handle, decode_compute_instance, decode_gpu_instance
from tessera.fakenvml.handles import gpu_instance_handle
from tessera.fakenvml.migstate import MAX_GPU_INSTANCE_ID
from tessera.fakenvml.placement import PlacedInstance, check_addition
from tessera.fakenvml.state import GpuState

# compute slices -> NVML_COMPUTE_INSTANCE_PROFILE_<n>_SLICE
_CI_PROFILE = {1: 0x0, 2: 0x1, 3: 0x2, 4: 0x3, 7: 0x4, 8: 0x5, 6: 0x6}


def _count_of(ref) -> ctypes.c_uint:
    """The c_uint behind ``byref(count)`` or ``pointer(count)``."""
    inner = getattr(ref, "_obj", None)
    if inner is None:
        inner = ref.contents
    return inner


class MigLifecycleFunctions:
    """Mixed into :class:`tessera.fakenvml.functions.FakeFunctions`."""

    def _profile_by_id(self, gpu: GpuState, profile_id: int) -> MigProfile:
        for p in gpu.spec.model.mig_profiles:
            if p.profile_id == profile_id:
                return p
        raise nvml_error("INVALID_ARGUMENT")

    def _gi_of(self, gi_handle) -> tuple[GpuState, int]:
        decoded = decode_gpu_instance(gi_handle)
        if decoded is None or decoded[0] >= len(self.node.gpus):
            raise nvml_error("INVALID_ARGUMENT")
        gpu = self.node.gpus[decoded[0]]
        if gpu.error_code is not None:
            raise pynvml.NVMLError(gpu.error_code)
        if gpu.gpu_instance(decoded[1]) is None:
            raise nvml_error("INVALID_ARGUMENT")
        return gpu, decoded[1]

    @nvml_call
    def nvmlDeviceGetGpuInstancePossiblePlacements(self, handle, profile_id: int, placements, count_ref):
        gpu = self._mig_capable(handle)
        profile = self._profile_by_id(gpu, profile_id)
        count = _count_of(count_ref)
        if placements is None:
            count.value = len(profile.starts)
            return pynvml.NVML_SUCCESS
        if count.value < len(profile.starts):
            count.value = len(profile.starts)
            raise nvml_error("INSUFFICIENT_SIZE")
        for i, start in enumerate(profile.starts):
            placements[i].start, placements[i].size = start, profile.size
        count.value = len(profile.starts)
        return pynvml.NVML_SUCCESS

    @nvml_call
    def nvmlDeviceCreateGpuInstanceWithPlacement(self, handle, profile_id: int, placement):
        gpu = self._mig_capable(handle)
        if not gpu.spec.mig_enabled:
            raise nvml_error("INVALID_ARGUMENT")
        profile = self._profile_by_id(gpu, profile_id)
        start = int(placement.start)
        if start not in profile.starts or int(placement.size) != profile.size:
            raise nvml_error("INVALID_ARGUMENT")
        free_ids = [i for i in range(1, MAX_GPU_INSTANCE_ID + 1) if gpu.gpu_instance(i) is None]
        if not free_ids:
            raise nvml_error("INSUFFICIENT_RESOURCES")
        gi = free_ids[0]
        index = gpu.spec.index
        try:
            check_addition(gpu.spec.model, gpu.gpu_instances(), PlacedInstance(profile, gi, start), f"GPU {index}")
        except ValueError:
            raise nvml_error("INSUFFICIENT_RESOURCES") from None
        self.node.command({"op": "create_gi", "gpu": index, "gi": gi, "profile": profile.name, "start": start})
        made = self.node.gpus[index].gpu_instance(gi)
        if made is None or made.start != start or made.profile != profile:
            raise nvml_error("INSUFFICIENT_RESOURCES")   # the placement was taken (or the id, by another writer)
        return gpu_instance_handle(index, gi)

    @nvml_call
    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, gi_handle, profile: int, eng_profile: int, version: int = 2):
        gpu, gi = self._gi_of(gi_handle)
        slices = gpu.gpu_instance(gi).profile.slices
        if profile != _CI_PROFILE.get(slices) or eng_profile != pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED:
            raise nvml_error("NOT_SUPPORTED")
        info = (pynvml.c_nvmlComputeInstanceProfileInfo_v2_t() if version == 2
                else pynvml.c_nvmlComputeInstanceProfileInfo_t())
        info.id, info.sliceCount, info.instanceCount = profile, slices, 1
        info.multiprocessorCount = gpu.gpu_instance(gi).profile.sm_count
        return info

    nvmlGpuInstanceGetComputeInstanceProfileInfoV = nvmlGpuInstanceGetComputeInstanceProfileInfo

    @nvml_call
    def nvmlGpuInstanceCreateComputeInstance(self, gi_handle, profile_id: int):
        gpu, gi = self._gi_of(gi_handle)
        if profile_id != _CI_PROFILE.get(gpu.gpu_instance(gi).profile.slices):
            raise nvml_error("NOT_SUPPORTED")
        if gi not in gpu.bare_gis:
            raise nvml_error("INSUFFICIENT_RESOURCES")   # its one compute instance exists already
        index = gpu.spec.index
        mig_uuid = f"MIG-{uuidlib.uuid4()}"
        self.node.command({"op": "create_ci", "gpu": index, "gi": gi, "uuid": mig_uuid})
        if not any(m.uuid == mig_uuid for m in self.node.gpus[index].mig):
            raise nvml_error("INSUFFICIENT_RESOURCES")
        return compute_instance_handle(index, gi, 0)

    @nvml_call
    def nvmlGpuInstanceGetComputeInstanceById(self, gi_handle, compute_instance_id: int):
        gpu, gi = self._gi_of(gi_handle)
        if compute_instance_id != 0 or gi in gpu.bare_gis:
            raise nvml_error("NOT_FOUND")
        return compute_instance_handle(gpu.spec.index, gi, 0)

    @nvml_call
    def nvmlComputeInstanceDestroy(self, ci_handle):
        decoded = decode_compute_instance(ci_handle)
        if decoded is None or decoded[0] >= len(self.node.gpus):
            raise nvml_error("INVALID_ARGUMENT")
        index, gi, _ = decoded
        gpu = self.node.gpus[index]
        if not any(m.gpu_instance_id == gi for m in gpu.mig):
            raise nvml_error("INVALID_ARGUMENT")
        if any(p.gpu_instance_id == gi for p in gpu.processes):
            raise nvml_error("IN_USE")
        self.node.command({"op": "destroy_ci", "gpu": index, "gi": gi})
        if any(m.gpu_instance_id == gi for m in self.node.gpus[index].mig):
            raise nvml_error("IN_USE")
        return pynvml.NVML_SUCCESS

    @nvml_call
    def nvmlGpuInstanceDestroy(self, gi_handle):
        gpu, gi = self._gi_of(gi_handle)
        if gi not in gpu.bare_gis:
            raise nvml_error("IN_USE")   # its compute instance goes first
        index = gpu.spec.index
        self.node.command({"op": "destroy_gi", "gpu": index, "gi": gi})
        if self.node.gpus[index].gpu_instance(gi) is not None:
            raise nvml_error("IN_USE")
        return pynvml.NVML_SUCCESS
