"""Tessera's access to NVML: with :mod:`tessera.nvmlmig` (MIG devices made and removed), the only
production module that calls pynvml.

Reads each GPU's inventory (:meth:`Nvml.read_gpus`, with NVLink and PCIe wiring from
:mod:`tessera.topology`), samples what it is doing
(:meth:`Nvml.sample_gpus`, with GPM figures and per-process utilization from :mod:`tessera.gpm`, dcgm-exporter's other default counters from
:mod:`tessera.devicecounters`) and waits for driver events (:meth:`Nvml.events`). A GPU that fails
is reported with the reason and never stops the others from being read. With
``TESSERA_FAKE_NVML=<node description>`` set, :meth:`Nvml.open` first puts the fake NVML in
place, so every daemon runs on a simulated node unchanged.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pynvml
from pynvml import NVMLError

from tessera import migcaps
from tessera.devicecounters import read_counters
from tessera.gpm import ActivitySampler, ProcessUtil
from tessera.gpu import (
    EccCounts, GpuEvent, GpuInfo, GpuProcess, GpuSample, MemoryRepair, MigInstance, MigUsage, NvmlUnavailable,
)
from tessera.log import get_logger
from tessera.migcaps import MigMinors, instance_capabilities
from tessera.nvmlmig import MigAdmin
from tessera.topology import PcieTopology, Wiring, numa_node_path, nvlink_ends, with_peers
from tessera.topology import bus as _bus
from tessera.topology import text as _text

__all__ = ["FAKE_ENV", "Nvml", "NvmlUnavailable", "error_reason"]

log = get_logger("nvml")

FAKE_ENV = "TESSERA_FAKE_NVML"
MIB, GIB = 1 << 20, 1 << 30
WATCHED_EVENTS = (pynvml.nvmlEventTypeXidCriticalError | pynvml.nvmlEventTypeSingleBitEccError
                  | pynvml.nvmlEventTypeDoubleBitEccError)
_NONE_ID = 0xFFFFFFFF
_CORES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
                 (10, 0): 128, (12, 0): 128}
_ABSENT = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
_ERROR_NAMES = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}
_REASONS = {
    pynvml.NVML_ERROR_GPU_IS_LOST: "gpu lost from the bus",
    pynvml.NVML_ERROR_UNKNOWN: "unknown NVML error",
    pynvml.NVML_ERROR_RESET_REQUIRED: "gpu requires a reset",
    pynvml.NVML_ERROR_CORRUPTED_INFOROM: "gpu infoROM is corrupted",
    pynvml.NVML_ERROR_NO_PERMISSION: "no permission to query the gpu",
    pynvml.NVML_ERROR_TIMEOUT: "gpu did not answer in time",
}


def error_reason(err: NVMLError) -> str:
    """A reason a person reads: ``gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)``."""
    name = _ERROR_NAMES.get(err.value, f"NVML error {err.value}")
    text = _REASONS.get(err.value) or NVMLError._errcode_to_string.get(err.value, "NVML error").lower()
    return f"{text} ({name})"


def _unavailable_message(err: NVMLError) -> str:
    hint = "install the NVIDIA driver, or set TESSERA_FAKE_NVML=<node description> to run on a fake GPU node"
    if err.value == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return f"NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded (NVML_ERROR_LIBRARY_NOT_FOUND); {hint}"
    if err.value == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return f"NVIDIA driver not found: the kernel driver is not loaded (NVML_ERROR_DRIVER_NOT_LOADED); {hint}"
    return f"NVIDIA driver unusable: {error_reason(err)}; {hint}"


def _optional(fn, *args, default=None):
    """Call an NVML function whose answer may be absent on this card; errors of the GPU itself pass."""
    try:
        return fn(*args)
    except _ABSENT:
        return default


def _mig_profile_name(slices: int, memory_mb: int, total_bytes: int) -> str:
    """``<slices>g.<GB>gb`` the way NVIDIA's go-nvlib derives it (for drivers without profile names)."""
    fraction = math.ceil(memory_mb * MIB / total_bytes * 8) / 8
    return f"{slices}g.{round(fraction * ((total_bytes + GIB - 1) // GIB))}gb"


class Nvml(MigAdmin):
    """A session with NVML. Use as ``with Nvml() as nvml: nvml.read_gpus()``."""

    def __init__(self) -> None:
        self._open = False
        self._known: dict[int, tuple[str, str]] = {}  # index -> (uuid, name) from the last good read
        self._event_lock = threading.Lock()
        self._event_set = None
        self._by_handle: dict[int, tuple[int, str]] = {}  # handle address -> (index, uuid)
        self._register_failed: dict[int, str] = {}
        self._registered_types: dict[int, int] = {}  # index -> the event types registered for it
        self._activity = ActivitySampler()
        self._pcie = PcieTopology()

    # ---- session --------------------------------------------------------------------------------
    def open(self) -> "Nvml":
        """Initialize NVML (installing the fake first when TESSERA_FAKE_NVML is set)."""
        fake = os.environ.get(FAKE_ENV)
        if fake:
            _install_fake(fake)
        try:
            pynvml.nvmlInit()
        except NVMLError as err:
            raise NvmlUnavailable(_unavailable_message(err)) from None
        self._open = True
        log.info("nvml_opened", driver=self.driver_version(), gpus=pynvml.nvmlDeviceGetCount(), fake_from_env=fake or None)
        return self

    def close(self) -> None:
        """Free the event set and shut NVML down."""
        if not self._open:
            return
        try:
            self._activity.close()
            if self._event_set is not None:
                pynvml.nvmlEventSetFree(self._event_set)
            pynvml.nvmlShutdown()
        except NVMLError as err:
            log.warning("nvml_close_failed", reason=error_reason(err))
        self._event_set, self._open = None, False
        self._by_handle.clear()

    def __enter__(self) -> "Nvml":
        return self if self._open else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def driver_version(self) -> str:
        """The driver version, e.g. ``550.54.15``."""
        return _text(pynvml.nvmlSystemGetDriverVersion())

    def cuda_version(self) -> str:
        """The newest CUDA version the driver supports, e.g. ``12.4``."""
        v = pynvml.nvmlSystemGetCudaDriverVersion()
        return f"{v // 1000}.{(v % 1000) // 10}"

    # ---- inventory ------------------------------------------------------------------------------
    def read_gpus(self) -> list[GpuInfo]:
        """Every GPU's inventory; a GPU that fails comes back with ``error`` set."""
        infos: list[GpuInfo] = []
        wiring: Wiring = {}
        caps = functools.cache(migcaps.read_mig_minors)  # read once per inventory, and only for a MIG GPU
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                info, direct, switch_links = self._read_gpu(index, handle, caps)
                wiring[index] = (handle, direct, switch_links)
                self._known[index] = (info.uuid, info.name)
            except NVMLError as err:
                uuid, name = self._known.get(index, ("", ""))
                info = GpuInfo(index=index, uuid=uuid, name=name, error=error_reason(err))
                log.warning("gpu_read_failed", gpu=index, uuid=uuid or None, reason=info.error)
            infos.append(info)
        return with_peers(infos, wiring, self._pcie)

    def _read_gpu(self, index: int, handle,
                  caps: Callable[[], MigMinors | None]) -> tuple[GpuInfo, dict[str, int], int]:
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
        bus = _bus(pynvml.nvmlDeviceGetPciInfo(handle).busId)
        minor = _optional(pynvml.nvmlDeviceGetMinorNumber, handle)
        mig_mode = _optional(pynvml.nvmlDeviceGetMigMode, handle)
        mig_enabled = bool(mig_mode) and mig_mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE
        direct, switch_links = nvlink_ends(handle)
        instances = self._mig_instances(handle, total) if mig_enabled else ()
        if instances and minor is not None and caps() is not None:  # the driver's table is keyed by minor
            instances = tuple(replace(m, capability_minors=instance_capabilities(
                caps(), minor, m.gpu_instance_id, m.compute_instance_id)) for m in instances)
        info = GpuInfo(
            index=index, uuid=_text(pynvml.nvmlDeviceGetUUID(handle)), name=_text(pynvml.nvmlDeviceGetName(handle)),
            minor_number=minor, memory_total_mib=total // MIB, sm_count=self._sm_count(handle, cc),
            compute_capability=cc, pci_bus_id=bus, numa_node=self._numa_node(handle, bus),
            mig_capable=mig_mode is not None, mig_enabled=mig_enabled,
            mig_instances=instances,
        )
        return info, direct, switch_links

    @staticmethod
    def _sm_count(handle, cc: tuple[int, int]) -> int | None:
        try:
            return pynvml.nvmlDeviceGetAttributes(handle).multiprocessorCount
        except (*_ABSENT, pynvml.NVMLError_InvalidArgument):
            pass  # full GPUs: attributes answer for MIG devices only; count SMs from CUDA cores
        cores = _optional(pynvml.nvmlDeviceGetNumGpuCores, handle)
        per_sm = _CORES_PER_SM.get(cc)
        return cores // per_sm if cores and per_sm else None

    @staticmethod
    def _numa_node(handle, bus: str) -> int | None:
        """The NUMA node the kernel gives the GPU's PCI device, as NVIDIA's device plugin reads it (the one
        the kubelet's topology hints align CPUs with); NVML only where the kernel does not say.
        ``nvmlDeviceGetNumaNodeId`` answers only where GPUs are NUMA nodes (Grace Hopper), and there it
        names the GPU's own memory node, not the CPUs' it sits beside."""
        text = migcaps.read_driver_file(numa_node_path(bus))
        try:
            node = int(text.strip()) if text is not None else None
        except ValueError:
            node = None
        if node is None or node < 0:
            node = _optional(pynvml.nvmlDeviceGetNumaNodeId, handle)
        return node if node is not None and node >= 0 else None

    @staticmethod
    def _mig_instances(handle, total_bytes: int) -> tuple[MigInstance, ...]:
        names: dict[int, str] = {}
        for profile in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                p = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, profile)
            except (*_ABSENT, pynvml.NVMLError_InvalidArgument):
                continue
            names[p.id] = _text(p.name).removeprefix("MIG ") or _mig_profile_name(p.sliceCount, p.memorySizeMB, total_bytes)
        instances = []
        for k in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
            except pynvml.NVMLError_NotFound:
                continue
            try:
                gi, ci = pynvml.nvmlDeviceGetGpuInstanceId(mig), pynvml.nvmlDeviceGetComputeInstanceId(mig)
                attrs = pynvml.nvmlDeviceGetAttributes(mig)
                gi_info = pynvml.nvmlGpuInstanceGetInfo(pynvml.nvmlDeviceGetGpuInstanceById(handle, gi))
                mig_uuid = _text(pynvml.nvmlDeviceGetUUID(mig))
            except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
                continue   # removed since it was listed (a driver making MIG devices per claim): gone, not a GPU fault
            profile = names.get(gi_info.profileId) or _mig_profile_name(
                attrs.gpuInstanceSliceCount, attrs.memorySizeMB, total_bytes)
            if attrs.computeInstanceSliceCount != attrs.gpuInstanceSliceCount:
                profile = f"{attrs.computeInstanceSliceCount}c.{profile}"
            instances.append(MigInstance(
                uuid=mig_uuid, profile=profile, gpu_instance_id=gi,
                compute_instance_id=ci, memory_mib=attrs.memorySizeMB, sm_count=attrs.multiprocessorCount,
                slices=attrs.gpuInstanceSliceCount, placement_start=gi_info.placement.start,
                placement_size=gi_info.placement.size, compute_slices=attrs.computeInstanceSliceCount,
                engines=(("copy", attrs.sharedCopyEngineCount), ("decoder", attrs.sharedDecoderCount),
                         ("encoder", attrs.sharedEncoderCount), ("jpeg", attrs.sharedJpegCount),
                         ("ofa", attrs.sharedOfaCount))))
        return tuple(sorted(instances, key=lambda m: (m.placement_start, m.gpu_instance_id)))

    # ---- samples --------------------------------------------------------------------------------
    def sample_gpus(self) -> list[GpuSample]:
        """What every GPU is doing now; a GPU that fails comes back with ``error`` set."""
        samples = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                samples.append(self._sample(index, pynvml.nvmlDeviceGetHandleByIndex(index)))
            except NVMLError as err:
                uuid = self._known.get(index, ("", ""))[0]
                samples.append(GpuSample(index=index, uuid=uuid, error=error_reason(err)))
                log.warning("gpu_sample_failed", gpu=index, uuid=uuid or None, reason=samples[-1].error)
        self._activity.retain({u for s in samples if s.healthy for u in (s.uuid, *(m.uuid for m in s.mig))})
        return samples

    def _sample(self, index: int, handle) -> GpuSample:
        uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        util = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
        power = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        mig_mode = _optional(pynvml.nvmlDeviceGetMigMode, handle)
        processes: list[GpuProcess] = []
        mig: list[MigUsage] = []
        if mig_mode and mig_mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE:
            for k in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                try:
                    mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
                except pynvml.NVMLError_NotFound:
                    continue
                mig_uuid, mig_mem = _text(pynvml.nvmlDeviceGetUUID(mh)), pynvml.nvmlDeviceGetMemoryInfo(mh)
                gpm = self._activity.gpm(handle, uuid, mig_uuid, pynvml.nvmlDeviceGetGpuInstanceId(mh))
                mig.append(MigUsage(mig_uuid, mig_mem.used // MIB, mig_mem.total // MIB, gpm))
                processes.extend(self._processes(mh, mig_uuid, None))
        else:
            processes = self._processes(handle, None, self._activity.process_utilization(handle, uuid))
        return GpuSample(
            index=index, uuid=uuid, processes=tuple(processes),
            gpu_util_pct=util.gpu if util else None, memory_util_pct=util.memory if util else None,
            memory_used_mib=mem.used // MIB, memory_free_mib=mem.free // MIB,
            temperature_c=_optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
            power_w=power / 1000.0 if power is not None else None,
            sm_clock_mhz=_optional(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM),
            ecc=self._ecc(handle), repair=self._repair(handle), mig=tuple(mig),
            gpm=self._activity.gpm(handle, uuid, uuid), counters=read_counters(handle),
        )

    @staticmethod
    def _processes(handle, mig_uuid: str | None, util: ProcessUtil | None) -> list[GpuProcess]:
        found: dict[int, GpuProcess] = {}
        lists = ((pynvml.nvmlDeviceGetComputeRunningProcesses(handle), False),
                 (_optional(pynvml.nvmlDeviceGetMPSComputeRunningProcesses, handle, default=[]), True))
        for procs, mps in lists:
            for p in procs:
                gi, ci = getattr(p, "gpuInstanceId", _NONE_ID), getattr(p, "computeInstanceId", _NONE_ID)
                used, (sm, mem) = p.usedGpuMemory, (None, None) if util is None else util.get(p.pid, (0, 0))
                found[p.pid] = GpuProcess(
                    pid=p.pid, used_memory_mib=None if used is None else used // MIB, mig_uuid=mig_uuid,
                    gpu_instance_id=None if gi == _NONE_ID else gi, compute_instance_id=None if ci == _NONE_ID else ci,
                    mps_client=mps, sm_util_pct=sm, memory_util_pct=mem)
        return list(found.values())

    @staticmethod
    def _ecc(handle) -> EccCounts | None:
        counts = []
        for counter in (pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC):
            for kind in (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED):
                value = _optional(pynvml.nvmlDeviceGetTotalEccErrors, handle, kind, counter)
                if value is None:
                    return None  # ECC off or not reported
                counts.append(value)
        return EccCounts(*counts)

    @staticmethod
    def _repair(handle) -> MemoryRepair | None:
        sbe = _optional(pynvml.nvmlDeviceGetRetiredPages, handle, pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
        dbe = _optional(pynvml.nvmlDeviceGetRetiredPages, handle, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
        pending = _optional(pynvml.nvmlDeviceGetRetiredPagesPendingStatus, handle)
        rows = _optional(pynvml.nvmlDeviceGetRemappedRows, handle)
        if sbe is None and dbe is None and rows is None:
            return None
        return MemoryRepair(
            retired_pages_single_bit=None if sbe is None else len(sbe),
            retired_pages_double_bit=None if dbe is None else len(dbe),
            retirement_pending=None if pending is None else bool(pending),
            remapped_rows_correctable=rows[0] if rows else None, remapped_rows_uncorrectable=rows[1] if rows else None,
            remap_pending=bool(rows[2]) if rows else None, remap_failed=bool(rows[3]) if rows else None,
        )

    # ---- events ---------------------------------------------------------------------------------
    def events(self, timeout_s: float) -> list[GpuEvent]:
        """Wait up to ``timeout_s`` for Xid and ECC events; returns what arrived (empty on timeout).

        The first call registers every readable GPU; later calls register GPUs that failed before.
        """
        with self._event_lock:
            if self._event_set is None:
                self._event_set = pynvml.nvmlEventSetCreate()
            self._register()
            event_set = self._event_set
        found: list[GpuEvent] = []
        timeout_ms = max(0, int(timeout_s * 1000))
        while True:
            try:
                data = pynvml.nvmlEventSetWait_v2(event_set, timeout_ms if not found else 0)
            except pynvml.NVMLError_Timeout:
                return found
            found.append(self._event(data))
            log.info("gpu_event", kind=found[-1].kind, gpu=found[-1].gpu_index, xid=found[-1].xid)

    def event_registrations(self) -> dict[int, int | str]:
        """Per GPU index, after :meth:`events`: the event types registered for it (a mask of
        ``WATCHED_EVENTS`` bits), or why registration failed."""
        with self._event_lock:
            return {**{i: self._registered_types.get(i, 0) for i, _ in self._by_handle.values()},
                    **self._register_failed}

    def _register(self) -> None:
        registered = {index for index, _ in self._by_handle.values()}
        for index in range(pynvml.nvmlDeviceGetCount()):
            if index in registered:
                continue
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                types = pynvml.nvmlDeviceGetSupportedEventTypes(handle) & WATCHED_EVENTS
                pynvml.nvmlDeviceRegisterEvents(handle, types, self._event_set)
                self._registered_types[index] = types
                self._by_handle[ctypes.cast(handle, ctypes.c_void_p).value] = (index, _text(pynvml.nvmlDeviceGetUUID(handle)))
                self._register_failed.pop(index, None)
            except NVMLError as err:
                if self._register_failed.get(index) != error_reason(err):
                    self._register_failed[index] = error_reason(err)
                    log.warning("gpu_event_registration_failed", gpu=index, reason=error_reason(err))

    def _event(self, data) -> GpuEvent:
        index, uuid = self._by_handle.get(ctypes.cast(data.device, ctypes.c_void_p).value, (None, None))
        kind, xid = "other", None
        if data.eventType & pynvml.nvmlEventTypeXidCriticalError:
            kind, xid = "xid", int(data.eventData)
        elif data.eventType & pynvml.nvmlEventTypeDoubleBitEccError:
            kind = "ecc_double_bit"
        elif data.eventType & pynvml.nvmlEventTypeSingleBitEccError:
            kind = "ecc_single_bit"
        gi, ci = data.gpuInstanceId, data.computeInstanceId
        return GpuEvent(kind=kind, gpu_index=index, gpu_uuid=uuid, xid=xid,
                        gpu_instance_id=None if gi == _NONE_ID else gi,
                        compute_instance_id=None if ci == _NONE_ID else ci, event_type=int(data.eventType))


def _install_fake(path: str) -> None:
    """Put the fake NVML for the node description at ``path`` in place (once per description)."""
    from tessera.fakenvml import DescriptionError, install, installed_node

    node = installed_node()
    if node is not None and Path(node.description.source).resolve() == Path(path).resolve():
        return
    try:
        install(path)
    except DescriptionError as err:
        raise NvmlUnavailable(f"{FAKE_ENV}={path}: {err}") from None
