"""Fake NVML functions that measure activity between two reads: GPM samples and per-process utilization.

GPM answers on compute capability 9.0 and later (H100), as the real driver does: older models say
``isSupportedDevice = 0`` and their sample calls fail with NOT_SUPPORTED. A sample records the
injected activity of the GPU or GPU instance when it is taken; ``nvmlGpmMetricsGet`` reports the
later sample's (the fake's workload changes only by injection, so there is nothing to average).
Per-process utilization is not reported on MIG devices or MIG-enabled GPUs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pynvml

from tessera.fakenvml.calls import FakeCalls, nvml_call, nvml_error
from tessera.fakenvml.handles import decode_gpm_sample, gpm_sample_handle
from tessera.fakenvml.state import Activity, GpuState

_GPM_FROM = (9, 0)


@dataclass(frozen=True)
class GpmRecord:
    """What one GPM sample saw: which device, and the metric values there."""

    gpu_index: int
    gpu_instance_id: int | None
    values: dict[int, float]


def _metric_values(a: Activity) -> dict[int, float]:
    return {
        pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: float(a.gpu),
        pynvml.NVML_GPM_METRIC_SM_UTIL: float(a.gpu),
        pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: float(a.gpu if a.sm_occupancy is None else a.sm_occupancy),
        pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: float(a.mem),
        pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: a.gpu * 0.6,  # the fake's stand-in: most busy time is matmuls
    }


class ActivityFunctions(FakeCalls):
    """GPM (Hopper on) and ``nvmlDeviceGetProcessUtilization``."""

    # ---- GPM ----------------------------------------------------------------------------------
    def _gpm_gpu(self, handle) -> GpuState:
        gpu = self._whole(handle)
        if tuple(gpu.spec.model.compute_capability) < _GPM_FROM:
            raise nvml_error("NOT_SUPPORTED")
        return gpu

    @staticmethod
    def _activity(gpu: GpuState, gpu_instance_id: int | None) -> Activity:
        if gpu_instance_id is not None:
            return gpu.gi_activity.get(gpu_instance_id, Activity())
        if not gpu.spec.mig_enabled:
            return Activity(gpu.gpu_util, gpu.mem_util, gpu.sm_occupancy)
        slices = gpu.spec.model.mig_compute_slices
        parts = [(m.placed.profile.slices, gpu.gi_activity.get(m.gpu_instance_id, Activity())) for m in gpu.mig]
        weighted = [sum(n * value(a) for n, a in parts) / slices
                    for value in (lambda a: a.gpu, lambda a: a.mem,
                                  lambda a: a.gpu if a.sm_occupancy is None else a.sm_occupancy)]
        return Activity(*weighted)

    def _record(self, sample, gpu: GpuState, gpu_instance_id: int | None):
        number = decode_gpm_sample(sample)
        if number not in self.gpm_samples:
            raise nvml_error("INVALID_ARGUMENT")
        self.gpm_samples[number] = GpmRecord(gpu.spec.index, gpu_instance_id,
                                             _metric_values(self._activity(gpu, gpu_instance_id)))
        return sample

    @nvml_call
    def nvmlGpmQueryDeviceSupport(self, handle):
        gpu = self._whole(handle)
        supported = tuple(gpu.spec.model.compute_capability) >= _GPM_FROM
        return pynvml.c_nvmlGpmSupport_t(version=pynvml.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(supported))

    @nvml_call
    def nvmlGpmSampleAlloc(self):
        number = self._next_gpm_sample
        self._next_gpm_sample += 1
        self.gpm_samples[number] = None
        return gpm_sample_handle(number)

    @nvml_call
    def nvmlGpmSampleFree(self, sample) -> None:
        number = decode_gpm_sample(sample)
        if number not in self.gpm_samples:
            raise nvml_error("INVALID_ARGUMENT")
        del self.gpm_samples[number]

    @nvml_call
    def nvmlGpmSampleGet(self, handle, sample):
        return self._record(sample, self._gpm_gpu(handle), None)

    @nvml_call
    def nvmlGpmMigSampleGet(self, handle, gpu_instance_id: int, sample):
        gpu = self._gpm_gpu(handle)
        if not gpu.spec.mig_enabled or all(m.gpu_instance_id != gpu_instance_id for m in gpu.mig):
            raise nvml_error("INVALID_ARGUMENT")
        return self._record(sample, gpu, gpu_instance_id)

    @nvml_call
    def nvmlGpmMetricsGet(self, request):
        if request.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise nvml_error("ARGUMENT_VERSION_MISMATCH")
        first, second = (self.gpm_samples.get(decode_gpm_sample(s) or 0) for s in (request.sample1, request.sample2))
        if (first is None or second is None or request.numMetrics > pynvml.NVML_GPM_METRIC_MAX
                or (first.gpu_index, first.gpu_instance_id) != (second.gpu_index, second.gpu_instance_id)):
            raise nvml_error("INVALID_ARGUMENT")
        gpu = self.node.gpus[second.gpu_index]
        if gpu.error_code is not None:
            raise pynvml.NVMLError(gpu.error_code)
        for metric in request.metrics[:request.numMetrics]:
            value = second.values.get(metric.metricId)
            metric.nvmlReturn = pynvml.NVML_SUCCESS if value is not None else pynvml.NVML_ERROR_NOT_SUPPORTED
            metric.value = value or 0.0
        return request

    # ---- per-process utilization ----------------------------------------------------------------
    @nvml_call
    def nvmlDeviceGetProcessUtilization(self, handle, last_seen_us: int) -> list:
        gpu, mig = self._gpu(handle)
        if mig is not None or gpu.spec.mig_enabled:
            raise nvml_error("NOT_SUPPORTED")
        now_us = int(time.time() * 1_000_000)
        rows = [pynvml.c_nvmlProcessUtilizationSample_t(pid=p.pid, timeStamp=now_us, smUtil=p.sm_util,
                                                        memUtil=p.mem_util, encUtil=0, decUtil=0)
                for p in gpu.processes if p.sm_util or p.mem_util]
        if not rows or now_us <= last_seen_us:
            raise nvml_error("NOT_FOUND")  # no process used the GPU since last_seen_us
        return rows
