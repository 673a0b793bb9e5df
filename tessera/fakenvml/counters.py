"""Fake NVML functions behind dcgm-exporter's remaining default counters.

As the real driver answers them: memory temperature only on HBM boards (a T4's GDDR6 says
NOT_SUPPORTED, per field, inside a successful ``nvmlDeviceGetFieldValues``); NVLink throughput only
on boards with NVLink; energy and NVLink traffic are counters since the driver loaded that grow
with the injected utilization between reads; PCIe throughput is a rate (KB/s) that follows it.
Video engines do no work here, so encoder and decoder utilization read 0. Only whole GPUs answer;
a MIG device handle gets NOT_SUPPORTED as on the real card.
"""

from __future__ import annotations

import time

import pynvml

from tessera.fakenvml.calls import FakeCalls, nvml_call, nvml_error
from tessera.fakenvml.state import GpuState

_BOOT_S = 3600.0  # the driver loaded an hour before the fake started: counters begin above 0
_NVLINK_KIB_PER_S_AT_FULL = 100_000_000  # ~100 GB/s over all links at 100 % utilization
_VIDEO_SAMPLE_US = 167_000  # sampling period NVML reports with encoder/decoder utilization
_ALL_LINKS = 0xFFFFFFFF


def power_mw(gpu: GpuState) -> int:
    """What ``nvmlDeviceGetPowerUsage`` reports: idle power plus a share of the headroom that follows utilization."""
    m = gpu.spec.model
    return 1000 * m.idle_power_w + (900 * (m.power_limit_w - m.idle_power_w) * gpu.gpu_util) // 100


def _advance(gpu: GpuState) -> None:
    """Count the energy used and NVLink data moved since the last read, at the present rates."""
    now = time.monotonic()
    if gpu.counted_at is None:
        gpu.energy_mj, gpu.counted_at = 1000.0 * gpu.spec.model.idle_power_w * _BOOT_S, now
        return
    elapsed, gpu.counted_at = now - gpu.counted_at, now
    gpu.energy_mj += power_mw(gpu) * elapsed
    if gpu.spec.model.nvlinks:
        gpu.nvlink_kib += _NVLINK_KIB_PER_S_AT_FULL * gpu.gpu_util / 100.0 * elapsed


class CounterFunctions(FakeCalls):
    """Memory clock and temperature, energy, PCIe and NVLink traffic, video engine utilization."""

    def _field(self, gpu: GpuState, field_id: int, scope: int) -> tuple[int, int, int]:
        """(nvmlReturn, valueType, value) of one field."""
        ok, ull, ui = pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
        if field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP and gpu.spec.model.hbm:
            return ok, ui, 35 + (gpu.gpu_util * 2) // 5
        if field_id == pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER:
            return ok, ull, 0
        if field_id in (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
            links = gpu.spec.model.nvlinks
            if links and (scope == _ALL_LINKS or scope < links):
                share = 1 if scope == _ALL_LINKS else links
                return ok, ull, int(gpu.nvlink_kib / 2 / share)  # half each way, spread evenly over links
            return pynvml.NVML_ERROR_NOT_SUPPORTED if not links else pynvml.NVML_ERROR_INVALID_ARGUMENT, ull, 0
        return pynvml.NVML_ERROR_NOT_SUPPORTED, ull, 0

    @nvml_call
    def nvmlDeviceGetFieldValues(self, handle, fieldIds):  # noqa: N803 - pynvml's argument name
        gpu = self._whole(handle)
        _advance(gpu)
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for i, wanted in enumerate(fieldIds):
            field_id, scope = wanted if isinstance(wanted, tuple) else (wanted, 0)
            ret, kind, value = self._field(gpu, field_id, scope)
            values[i].fieldId, values[i].scopeId = field_id, scope
            values[i].timestamp = int(time.time() * 1_000_000)
            values[i].nvmlReturn, values[i].valueType = ret, kind
            if kind == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT:
                values[i].value.uiVal = value
            else:
                values[i].value.ullVal = value
        return values

    @nvml_call
    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:
        gpu = self._whole(handle)
        _advance(gpu)
        return int(gpu.energy_mj)

    @nvml_call
    def nvmlDeviceGetPcieReplayCounter(self, handle) -> int:
        self._whole(handle)
        return 0

    @nvml_call
    def nvmlDeviceGetPcieThroughput(self, handle, counter: int) -> int:
        gpu = self._whole(handle)
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            return 120 + 900 * gpu.gpu_util  # KB/s: results back to the host
        if counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            return 200 + 2400 * gpu.gpu_util  # KB/s: batches in from the host
        raise nvml_error("INVALID_ARGUMENT")

    @nvml_call
    def nvmlDeviceGetEncoderUtilization(self, handle) -> list[int]:
        self._whole(handle)
        return [0, _VIDEO_SAMPLE_US]

    @nvml_call
    def nvmlDeviceGetDecoderUtilization(self, handle) -> list[int]:
        self._whole(handle)
        return [0, _VIDEO_SAMPLE_US]
