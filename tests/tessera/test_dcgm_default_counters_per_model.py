"""dcgm-exporter's other default counters, read through pynvml from the fake as from a real card of each model."""

from __future__ import annotations

import time

import pynvml

from tessera import fakenvml
from tessera.fakenvml import FaultInjector
from tessera.nvml import Nvml

from fakegpu import one_model


def counters(tmp_path, model: str, busy_pct: int = 0):
    path = one_model(tmp_path, model, count=1)
    fakenvml.install(path)
    FaultInjector(path).set_utilization(0, busy_pct, 10)
    nvml = Nvml().open()
    try:
        return nvml.sample_gpus()[0].counters
    finally:
        nvml.close()


def test_an_h100_reports_every_counter_in_dcgms_units(tmp_path):
    c = counters(tmp_path, "H100-SXM5-80GB", busy_pct=50)
    assert c.memory_clock_mhz == 2619
    assert c.memory_temperature_c == 35 + 20  # HBM3 warms with the load
    assert c.energy_mj >= 70 * 3600 * 1000  # mJ: idle power since the driver loaded an hour ago
    assert c.pcie_replays == 0
    assert (c.encoder_util_pct, c.decoder_util_pct) == (0, 0)
    assert c.memory_reserved_mib == 579
    assert c.nvlink_kib is not None and c.nvlink_kib >= 0
    assert c.pcie_tx_bytes_per_s == (120 + 900 * 50) * 1024  # NVML's KB/s as bytes/s
    assert c.pcie_rx_bytes_per_s == (200 + 2400 * 50) * 1024


def test_a_gddr_board_without_nvlink_has_no_memory_temperature_and_no_nvlink_counter(tmp_path):
    c = counters(tmp_path, "T4")
    assert c.memory_temperature_c is None and c.nvlink_kib is None
    assert c.memory_clock_mhz == 5000 and c.energy_mj > 0


def test_field_values_answer_per_field_and_counters_grow_with_the_load(tmp_path):
    path = one_model(tmp_path, "A100-SXM4-80GB", count=1)
    fakenvml.install(path)
    FaultInjector(path).set_utilization(0, 80, 10)
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        tx_all = (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF)
        first = pynvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP, tx_all,
                                                         pynvml.NVML_FI_DEV_POWER_INSTANT])
        assert [v.nvmlReturn for v in first] == [pynvml.NVML_SUCCESS, pynvml.NVML_SUCCESS,
                                                 pynvml.NVML_ERROR_NOT_SUPPORTED]  # per field, not raised
        energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        time.sleep(0.05)
        later = pynvml.nvmlDeviceGetFieldValues(handle, [tx_all])[0].value.ullVal
        assert later > first[1].value.ullVal
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) > energy
        link_12 = pynvml.nvmlDeviceGetFieldValues(handle, [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 12)])
        assert link_12[0].nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT  # the A100 has links 0..11
    finally:
        pynvml.nvmlShutdown()
