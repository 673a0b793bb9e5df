"""Fake NVML functions that report activity: processes, memory, sensors, ECC, and events."""

from __future__ import annotations

import time

import pynvml

from tessera.fakenvml.counters import power_mw
from tessera.fakenvml.calls import MIB, FakeCalls, nvml_error, process_object, nvml_call
from tessera.fakenvml.handles import decode_event_set, device_handle, event_set_handle
from tessera.fakenvml.state import EventSet, GpuState

SUPPORTED_EVENTS = (pynvml.nvmlEventTypeXidCriticalError | pynvml.nvmlEventTypeSingleBitEccError
                    | pynvml.nvmlEventTypeDoubleBitEccError | pynvml.nvmlEventTypePState
                    | pynvml.nvmlEventTypeClock)
_POLL_S = 0.02


class TelemetryFunctions(FakeCalls):
    """What a device is doing, what went wrong on it, and the events it raises."""

    # ---- workload -----------------------------------------------------------------------------
    def _processes(self, handle, mps: bool) -> list:
        gpu, mig = self._gpu(handle)
        gi_only = None if mig is None else gpu.mig[mig].gpu_instance_id
        rows = []
        for p in gpu.processes:
            if p.mps != mps or (gi_only is not None and p.gpu_instance_id != gi_only):
                continue
            gi, ci = (0xFFFFFFFF, 0xFFFFFFFF) if p.gpu_instance_id is None else (p.gpu_instance_id, 0)
            rows.append(process_object(p, gi, ci))
        return rows

    @nvml_call
    def nvmlDeviceGetComputeRunningProcesses(self, handle) -> list:
        return self._processes(handle, mps=False)

    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses
    nvmlDeviceGetComputeRunningProcesses_v2 = nvmlDeviceGetComputeRunningProcesses

    @nvml_call
    def nvmlDeviceGetMPSComputeRunningProcesses(self, handle) -> list:
        return self._processes(handle, mps=True)

    nvmlDeviceGetMPSComputeRunningProcesses_v3 = nvmlDeviceGetMPSComputeRunningProcesses
    nvmlDeviceGetMPSComputeRunningProcesses_v2 = nvmlDeviceGetMPSComputeRunningProcesses

    @nvml_call
    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        gpu, mig = self._gpu(handle)
        if mig is None:
            total, used = gpu.spec.model.memory_mib, gpu.used_mib()
        else:
            m = gpu.mig[mig]
            total, used = m.placed.profile.memory_mib, gpu.used_mib(m.gpu_instance_id)
        if not version:
            mem = pynvml.c_nvmlMemory_t()
            mem.total, mem.used, mem.free = total * MIB, used * MIB, (total - used) * MIB
            return mem
        reserved = gpu.spec.model.reserved_mib if mig is None else 0  # v2: used leaves the reserved part out
        return pynvml.c_nvmlMemory_v2_t(version=version, total=total * MIB, reserved=reserved * MIB,
                                        used=used * MIB, free=(total - used - reserved) * MIB)

    @nvml_call
    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu = self._whole(handle)
        if gpu.spec.mig_enabled:
            raise nvml_error("NOT_SUPPORTED")
        return pynvml.c_nvmlUtilization_t(gpu=gpu.gpu_util, memory=gpu.mem_util)

    @nvml_call
    def nvmlDeviceGetTemperature(self, handle, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise nvml_error("INVALID_ARGUMENT")
        return 32 + (self._whole(handle).gpu_util * 2) // 5

    @nvml_call
    def nvmlDeviceGetPowerUsage(self, handle) -> int:
        return power_mw(self._whole(handle))

    @nvml_call
    def nvmlDeviceGetEnforcedPowerLimit(self, handle) -> int:
        return 1000 * self._whole(handle).spec.model.power_limit_w

    nvmlDeviceGetPowerManagementLimit = nvmlDeviceGetEnforcedPowerLimit

    @nvml_call
    def nvmlDeviceGetClockInfo(self, handle, clock_type: int) -> int:
        gpu = self._whole(handle)
        if clock_type == pynvml.NVML_CLOCK_MEM:  # memory runs at its rated clock, busy or not
            return gpu.spec.model.memory_clock_mhz
        if clock_type not in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            raise nvml_error("NOT_SUPPORTED")
        busy = gpu.gpu_util > 0 or bool(gpu.processes)
        return gpu.spec.model.max_sm_clock_mhz if busy else gpu.spec.model.idle_sm_clock_mhz

    @nvml_call
    def nvmlDeviceGetMaxClockInfo(self, handle, clock_type: int) -> int:
        if clock_type not in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            raise nvml_error("NOT_SUPPORTED")
        return self._whole(handle).spec.model.max_sm_clock_mhz

    # ---- memory errors ------------------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetTotalEccErrors(self, handle, error_type: int, counter_type: int) -> int:
        gpu = self._whole(handle)
        if counter_type not in (pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC):
            raise nvml_error("INVALID_ARGUMENT")
        if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED:
            return gpu.ecc_corrected
        if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return gpu.ecc_uncorrected
        raise nvml_error("INVALID_ARGUMENT")

    def _retiring(self, handle) -> GpuState:
        gpu = self._whole(handle)
        if gpu.spec.model.row_remapping:
            raise nvml_error("NOT_SUPPORTED")
        return gpu

    @nvml_call
    def nvmlDeviceGetRetiredPages(self, handle, cause: int) -> list[int]:
        gpu = self._retiring(handle)
        return list(gpu.retired_pages) if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR else []

    @nvml_call
    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle) -> int:
        return int(self._retiring(handle).retirement_pending)

    @nvml_call
    def nvmlDeviceGetRemappedRows(self, handle) -> tuple[int, int, int, int]:
        gpu = self._whole(handle)
        if not gpu.spec.model.row_remapping:
            raise nvml_error("NOT_SUPPORTED")
        return (0, gpu.remapped_uncorrectable, int(gpu.remap_pending), 0)

    # ---- events -------------------------------------------------------------------------------
    @nvml_call
    def nvmlEventSetCreate(self):
        number = self._next_event_set
        self._next_event_set += 1
        self.node.event_sets[number] = EventSet()
        return event_set_handle(number)

    def _event_set(self, handle) -> EventSet:
        es = self.node.event_sets.get(decode_event_set(handle) or 0)
        if es is None:
            raise nvml_error("INVALID_ARGUMENT")
        return es

    @nvml_call
    def nvmlDeviceGetSupportedEventTypes(self, handle) -> int:
        self._whole(handle)
        return SUPPORTED_EVENTS

    @nvml_call
    def nvmlDeviceRegisterEvents(self, handle, event_types: int, event_set) -> None:
        gpu = self._whole(handle)
        if event_types & ~SUPPORTED_EVENTS:
            raise nvml_error("NOT_SUPPORTED")
        es = self._event_set(event_set)
        es.registrations[gpu.spec.index] = es.registrations.get(gpu.spec.index, 0) | event_types

    @nvml_call
    def nvmlEventSetFree(self, event_set) -> None:
        self._event_set(event_set)
        del self.node.event_sets[decode_event_set(event_set)]

    def nvmlEventSetWait_v2(self, event_set, timeout_ms: int):
        """Blocks up to ``timeout_ms`` for an event; polls the control file so injections arrive fast."""
        deadline = time.monotonic() + max(0, timeout_ms) / 1000.0
        while True:
            got = self._pop_event(event_set)
            if got is not None:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise nvml_error("TIMEOUT")
            time.sleep(min(_POLL_S, remaining))

    nvmlEventSetWait = nvmlEventSetWait_v2

    @nvml_call
    def _pop_event(self, event_set):
        es = self._event_set(event_set)
        if not es.queue:
            return None
        index, event_type, data, gi, ci = es.queue.popleft()
        return pynvml.c_nvmlEventData_t(device=device_handle(index), eventType=event_type, eventData=data,
                                        gpuInstanceId=gi, computeInstanceId=ci)


