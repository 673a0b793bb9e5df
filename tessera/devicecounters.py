"""The rest of dcgm-exporter's default counters, read from NVML for one whole GPU.

Each figure comes from the NVML call DCGM itself uses for the field, in the unit DCGM reports:

| DCGM field | NVML | unit |
|---|---|---|
| ``DEV_MEM_CLOCK`` | ``nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)`` | MHz |
| ``DEV_MEMORY_TEMP`` | ``nvmlDeviceGetFieldValues(NVML_FI_DEV_MEMORY_TEMP)`` | C (HBM cards only) |
| ``DEV_TOTAL_ENERGY_CONSUMPTION`` | ``nvmlDeviceGetTotalEnergyConsumption`` | mJ since the driver loaded |
| ``DEV_PCIE_REPLAY_COUNTER`` | ``nvmlDeviceGetPcieReplayCounter`` | retries |
| ``DEV_ENC_UTIL``, ``DEV_DEC_UTIL`` | ``nvmlDeviceGetEncoderUtilization``, ``...DecoderUtilization`` | % |
| ``DEV_FB_RESERVED`` | ``nvmlDeviceGetMemoryInfo(version=nvmlMemory_v2).reserved`` | MiB |
| ``DEV_NVLINK_BANDWIDTH_TOTAL`` | ``NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX`` + ``_RX``, scope all links | KiB |
| ``PROF_PCIE_TX_BYTES``, ``PROF_PCIE_RX_BYTES`` | ``nvmlDeviceGetPcieThroughput`` (KB/s over 20 ms) | bytes/s |

A figure the card does not report (NOT_SUPPORTED, or a driver without the call) is None, never 0.
"""

from __future__ import annotations

import pynvml

from tessera.gpu import DeviceCounters

__all__ = ["read_counters"]

_ABSENT = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
_ALL_LINKS = 0xFFFFFFFF  # scopeId of a throughput field: the sum over every link
MIB = 1 << 20
_UNION_MEMBER = {  # nvmlValueType_t -> the member of nvmlValue_t that holds it
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal", pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


def _optional(fn, *args):
    try:
        return fn(*args)
    except _ABSENT:
        return None


def _field_values(handle, fields: list) -> list[int | None]:
    """The fields' values, None for each one NVML did not answer (per-field status)."""
    try:
        values = pynvml.nvmlDeviceGetFieldValues(handle, fields)
    except _ABSENT:
        return [None] * len(fields)
    return [_field_value(v) if v.nvmlReturn == pynvml.NVML_SUCCESS else None for v in values]


def _field_value(v) -> int:
    return int(getattr(v.value, _UNION_MEMBER.get(v.valueType, "ullVal")))


def read_counters(handle) -> DeviceCounters:
    """dcgm-exporter's remaining default counters of the GPU ``handle`` (a whole GPU, not a MIG device)."""
    mem_temp, tx_kib, rx_kib = _field_values(handle, [
        pynvml.NVML_FI_DEV_MEMORY_TEMP,
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, _ALL_LINKS),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, _ALL_LINKS)])
    enc = _optional(pynvml.nvmlDeviceGetEncoderUtilization, handle)
    dec = _optional(pynvml.nvmlDeviceGetDecoderUtilization, handle)
    memory = _optional(pynvml.nvmlDeviceGetMemoryInfo, handle, pynvml.nvmlMemory_v2)
    tx = _optional(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    rx = _optional(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_RX_BYTES)
    return DeviceCounters(
        memory_clock_mhz=_optional(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
        memory_temperature_c=mem_temp,
        energy_mj=_optional(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle),
        pcie_replays=_optional(pynvml.nvmlDeviceGetPcieReplayCounter, handle),
        encoder_util_pct=None if enc is None else enc[0],
        decoder_util_pct=None if dec is None else dec[0],
        memory_reserved_mib=None if memory is None else memory.reserved // MIB,
        nvlink_kib=None if tx_kib is None or rx_kib is None else tx_kib + rx_kib,
        pcie_tx_bytes_per_s=None if tx is None else tx * 1024,
        pcie_rx_bytes_per_s=None if rx is None else rx * 1024,
    )
