"""GPM figures per GPU and per MIG instance on Hopper, none before it; per-process utilization where NVML has it."""

from __future__ import annotations

import sys

import pynvml
import pytest

from tessera import fakenvml
from tessera.fakenvml import FaultInjector
from tessera.gpu import GpmReading
from tessera.nvml import Nvml

from fakegpu import one_model, write_node


def open_node(path):
    fakenvml.install(path)
    return FaultInjector(path), Nvml().open()


def test_the_first_read_has_no_gpm_figures_the_second_has_what_ran_between(tmp_path):
    inject, nvml = open_node(one_model(tmp_path, "H100-SXM5-80GB", count=2))
    assert [s.gpm for s in nvml.sample_gpus()] == [None, None]  # GPM needs two samples
    inject.set_utilization(0, 60, 20, sm_occupancy_pct=35)
    first, second = nvml.sample_gpus()
    assert first.gpm == GpmReading(graphics_util_pct=60.0, sm_util_pct=60.0, sm_occupancy_pct=35.0,
                                   dram_bw_util_pct=20.0, tensor_util_pct=36.0)  # the fake's tensor: 0.6 x busy
    assert second.gpm == GpmReading(0.0, 0.0, 0.0, 0.0, 0.0)  # idle is a figure too
    nvml.close()


def test_each_mig_instance_of_an_h100_has_its_own_gpm_figures(tmp_path):
    path = write_node(tmp_path, {"node": "h", "gpus": [{"model": "H100-SXM5-80GB", "mig": ["4g.40gb", "2g.20gb",
                                                                                          "1g.10gb"]}]})
    inject, nvml = open_node(path)
    by_profile = {m.profile: m for m in nvml.read_gpus()[0].mig_instances}
    nvml.sample_gpus()
    inject.set_utilization(0, 70, 10, gpu_instance_id=by_profile["4g.40gb"].gpu_instance_id, sm_occupancy_pct=40)
    inject.set_utilization(0, 35, gpu_instance_id=by_profile["1g.10gb"].gpu_instance_id)
    sample = nvml.sample_gpus()[0]
    gpm = {m.uuid: m.gpm for m in sample.mig}
    assert gpm[by_profile["4g.40gb"].uuid] == GpmReading(70.0, 70.0, 40.0, 10.0, 42.0)
    assert gpm[by_profile["1g.10gb"].uuid] == GpmReading(35.0, 35.0, 35.0, 0.0, 21.0)
    assert gpm[by_profile["2g.20gb"].uuid] == GpmReading(0.0, 0.0, 0.0, 0.0, 0.0)
    assert sample.gpu_util_pct is None  # NVML's utilization rates stay unsupported in MIG mode
    assert sample.gpm.graphics_util_pct == pytest.approx((4 * 70 + 35) / 7)  # the fake: slice-weighted
    nvml.close()


@pytest.mark.parametrize("model, mig", [("A100-SXM4-80GB", ["3g.40gb"]), ("A100-SXM4-80GB", None), ("T4", None),
                                        ("V100-SXM2-32GB", None)])
def test_gpus_before_hopper_have_no_gpm_and_say_not_supported(tmp_path, model, mig):
    gpu = {"model": model, "count": 1, **({"mig": mig} if mig else {})}
    inject, nvml = open_node(write_node(tmp_path, {"node": "old", "gpus": [gpu]}))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 0
    sample = pynvml.nvmlGpmSampleAlloc()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmSampleGet(handle, sample)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmMigSampleGet(handle, 1, sample)
    pynvml.nvmlGpmSampleFree(sample)
    inject.set_utilization(0, 50)
    for _ in range(3):
        s = nvml.sample_gpus()[0]
        assert s.gpm is None and all(m.gpm is None for m in s.mig)
    nvml.close()


def test_a_failed_gpu_starts_its_gpm_window_again_and_close_frees_every_sample(tmp_path):
    inject, nvml = open_node(one_model(tmp_path, "H100-SXM5-80GB", count=2))
    nvml.sample_gpus()
    assert nvml.sample_gpus()[1].gpm is not None
    inject.fail_gpu(1)
    assert not nvml.sample_gpus()[1].healthy
    inject.restore_gpu(1)
    assert nvml.sample_gpus()[1].gpm is None  # no window across the outage
    assert nvml.sample_gpus()[1].gpm is not None
    fake = sys.modules["tessera.fakenvml.install"]._installed
    assert len(fake.gpm_samples) == 2  # one kept per GPU, the others freed
    nvml.close()
    assert fake.gpm_samples == {}


def test_processes_carry_the_utilization_nvml_reports_for_them(tmp_path):
    inject, nvml = open_node(one_model(tmp_path, "T4", count=1))
    inject.set_processes(0, [(101, 500, 30), {"pid": 102, "used_mib": 700, "sm_util": 45, "mem_util": 12},
                             (103, 100)])
    for _ in range(2):  # the second read asks only for samples newer than the first one's
        procs = {p.pid: (p.sm_util_pct, p.memory_util_pct) for p in nvml.sample_gpus()[0].processes}
        assert procs == {101: (30, 0), 102: (45, 12), 103: (0, 0)}  # 103 used no SM time: NVML leaves it out
    inject.set_processes(0, [(101, 500)])
    assert [(p.pid, p.sm_util_pct) for p in nvml.sample_gpus()[0].processes] == [(101, 0)]  # NOT_FOUND: idle
    nvml.close()


def test_mig_processes_have_no_utilization_rather_than_zero(tmp_path):
    path = write_node(tmp_path, {"node": "m", "gpus": [{"model": "A100-SXM4-80GB", "mig": ["3g.40gb"]}]})
    inject, nvml = open_node(path)
    gi = nvml.read_gpus()[0].mig_instances[0].gpu_instance_id
    inject.set_processes(0, [(201, 1000, 80)], gpu_instance_id=gi)
    [proc] = nvml.sample_gpus()[0].processes
    assert (proc.pid, proc.used_memory_mib, proc.sm_util_pct, proc.memory_util_pct) == (201, 1000, None, None)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetProcessUtilization(pynvml.nvmlDeviceGetHandleByIndex(0), 0)
    nvml.close()


def test_bad_utilization_injections_fail_in_the_caller(tmp_path):
    inject, nvml = open_node(one_model(tmp_path, "H100-SXM5-80GB", count=1))
    with pytest.raises(ValueError, match="sm_occupancy_pct 101"):
        inject.set_utilization(0, 10, sm_occupancy_pct=101)
    with pytest.raises(ValueError, match="no MIG GPU instance 3"):
        inject.set_utilization(0, 10, gpu_instance_id=3)
    with pytest.raises(ValueError, match="sm_util -1"):
        inject.set_processes(0, [(1, 10, -1)])
    nvml.close()
