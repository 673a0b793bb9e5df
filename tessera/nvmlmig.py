"""MIG devices made and removed on demand: the NVML calls a driver that partitions a GPU per claim makes.

Mixed into :class:`tessera.nvml.Nvml` (this and :mod:`tessera.nvml` are the only production modules
that call pynvml). A MIG device is a GPU instance at a placement (its first memory slice and how many
it spans) with one compute instance spanning it, as ``nvidia-smi mig -cgi <profile>:<start> -C`` makes
it. Only a GPU the admin put in MIG mode is partitioned; the mode itself is never changed here (that
needs a GPU reset, which Tessera never does).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace

import pynvml
from pynvml import NVMLError

from tessera import migcaps
from tessera.gpu import MigInstance

# compute slices -> NVML_COMPUTE_INSTANCE_PROFILE_<n>_SLICE (the compute instance spanning its GPU instance)
_CI_PROFILE = {1: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE, 2: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE,
               3: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE, 4: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE,
               6: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE, 7: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE,
               8: pynvml.NVML_COMPUTE_INSTANCE_PROFILE_8_SLICE}


_ERROR_NAMES = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}


def _why(err: NVMLError) -> str:
    return f"{err} ({_ERROR_NAMES.get(err.value, 'NVML error')})"


def _destroy_gpu_instance(gi) -> None:
    """Remove GPU instance ``gi``: its compute instance first (the driver refuses the GPU instance while
    one exists), then the GPU instance itself. NVMLError where the driver refuses either step."""
    try:
        pynvml.nvmlComputeInstanceDestroy(pynvml.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
    except pynvml.NVMLError_NotFound:
        pass   # made without one, or a crash between the two steps
    pynvml.nvmlGpuInstanceDestroy(gi)


MAX_GPU_INSTANCE_ID = 14   # the driver's capability table has GPU instances 0..14 per GPU


class MigError(Exception):
    """A MIG device could not be made or removed; the message says which and why."""


@dataclass(frozen=True)
class MigPlacement:
    """One place a GPU-instance profile can be made on a GPU."""

    profile: str       # "1g.10gb"
    profile_id: int    # the id NVML makes instances by (not the profile index)
    slices: int        # compute slices
    memory_mib: int
    sm_count: int
    start: int         # first memory slice
    size: int          # memory slices spanned


class MigAdmin:
    """Making and removing MIG devices (needs an open :class:`tessera.nvml.Nvml`)."""

    def mig_placements(self, index: int) -> list[MigPlacement]:
        """Every (profile, placement) the GPU at ``index`` offers, whatever exists on it now."""
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        found = []
        for profile in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, profile)
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument,
                    pynvml.NVMLError_FunctionNotFound):
                continue
            name = info.name.decode() if isinstance(info.name, bytes) else str(info.name)
            count = ctypes.c_uint(0)
            pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, info.id, None, ctypes.byref(count))
            spots = (pynvml.c_nvmlGpuInstancePlacement_t * count.value)()
            pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, info.id, spots, ctypes.byref(count))
            found += [MigPlacement(name.removeprefix("MIG "), info.id, info.sliceCount, info.memorySizeMB,
                                   info.multiprocessorCount, s.start, s.size) for s in spots[:count.value]]
        return found

    def create_mig_device(self, index: int, placement: MigPlacement) -> MigInstance:
        """Make a MIG device of ``placement`` on the GPU at ``index`` (GPU instance, then its compute
        instance; the GPU instance is removed again if the second step fails). MigError where the
        placement is taken or the driver refuses."""
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        spot = pynvml.c_nvmlGpuInstancePlacement_t(start=placement.start, size=placement.size)
        try:
            gi = pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(handle, placement.profile_id, spot)
        except NVMLError as err:
            raise MigError(f"GPU {index}: making a {placement.profile} GPU instance at memory slice "
                           f"{placement.start} failed: {_why(err)}") from None
        try:
            if placement.slices not in _CI_PROFILE:
                raise MigError(f"GPU {index}: no compute-instance profile spans {placement.slices} slices")
            ci_profile = pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                gi, _CI_PROFILE[placement.slices], pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
            pynvml.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile.id)
            gi_id = pynvml.nvmlGpuInstanceGetInfo(gi).id
            made = self.mig_device(index, gi_id)
            if made is None:
                raise MigError(f"GPU {index}: GPU instance {gi_id} was made but NVML lists no MIG device in it")
        except (NVMLError, MigError) as err:
            self._remove_gpu_instance(gi)
            why = _why(err) if isinstance(err, NVMLError) else str(err)
            raise MigError(f"GPU {index}: making the compute instance of a {placement.profile} GPU instance "
                           f"failed: {why}") from None
        return made

    @staticmethod
    def _remove_gpu_instance(gi) -> None:
        """Undo a half-made MIG device: its compute instance (if made) and its GPU instance; a failure is
        left for the driver's start, which removes GPU instances no claim holds."""
        try:
            _destroy_gpu_instance(gi)
        except NVMLError:
            pass

    def gpu_instance_ids(self, index: int) -> list[int]:
        """The GPU instances on the GPU at ``index`` now, with or without a compute instance (a MIG
        device needs both; a crash between the two steps leaves a GPU instance alone)."""
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        found = []
        for gpu_instance_id in range(MAX_GPU_INSTANCE_ID + 1):
            try:
                pynvml.nvmlDeviceGetGpuInstanceById(handle, gpu_instance_id)
            except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
                continue
            found.append(gpu_instance_id)
        return found

    def mig_device(self, index: int, gpu_instance_id: int) -> MigInstance | None:
        """The MIG device in GPU instance ``gpu_instance_id`` of the GPU at ``index``, with its capability
        device minors; None when there is none."""
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        # NVML has no GPU-instance id -> MIG device handle lookup (MIG devices are found by index only, and a
        # compute instance's info names the parent GPU), and the MIG UUID is read from that handle: so list them.
        found = next((m for m in self._mig_instances(handle, total) if m.gpu_instance_id == gpu_instance_id), None)
        table = migcaps.read_mig_minors()
        minor = pynvml.nvmlDeviceGetMinorNumber(handle)
        if found is not None and table is not None:
            found = replace(found, capability_minors=migcaps.instance_capabilities(
                table, minor, found.gpu_instance_id, found.compute_instance_id))
        return found

    def destroy_mig_device(self, index: int, gpu_instance_id: int) -> bool:
        """Remove the MIG device in GPU instance ``gpu_instance_id`` (compute instances, then the GPU
        instance); False when there was none. MigError when the driver refuses (processes still use it)."""
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            gi = pynvml.nvmlDeviceGetGpuInstanceById(handle, gpu_instance_id)
        except pynvml.NVMLError_NotFound:
            return False
        try:
            _destroy_gpu_instance(gi)
        except NVMLError as err:
            raise MigError(f"GPU {index}: removing GPU instance {gpu_instance_id} failed: {_why(err)}") from None
        return True
