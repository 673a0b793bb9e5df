"""Every catalog model reads back, through the NVML layer, the figures the real card reports."""

from __future__ import annotations

import pytest

from tessera import fakenvml
from tessera.nvml import Nvml

from fakegpu import one_model

# name, memory MiB, SMs, compute capability, NVLink links to the other GPU, idle power W
REAL = {
    "A100-SXM4-40GB": ("NVIDIA A100-SXM4-40GB", 40960, 108, (8, 0), 12, 55),
    "A100-SXM4-80GB": ("NVIDIA A100-SXM4-80GB", 81920, 108, (8, 0), 12, 60),
    "H100-SXM5-80GB": ("NVIDIA H100 80GB HBM3", 81559, 132, (9, 0), 18, 70),
    "A30": ("NVIDIA A30", 24576, 56, (8, 0), None, 30),
    "T4": ("Tesla T4", 15360, 40, (7, 5), None, 10),
    "V100-SXM2-16GB": ("Tesla V100-SXM2-16GB", 16160, 80, (7, 0), 6, 40),
    "V100-SXM2-32GB": ("Tesla V100-SXM2-32GB", 32510, 80, (7, 0), 6, 40),
}


def test_the_catalog_holds_exactly_the_models_checked_here():
    assert set(fakenvml.CATALOG) == set(REAL)


@pytest.mark.parametrize("model", sorted(REAL))
def test_model_reads_back_real_figures(tmp_path, model):
    name, memory, sms, cc, links, idle_w = REAL[model]
    fakenvml.install(one_model(tmp_path, model, count=2))
    with Nvml() as nvml:
        gpus, samples = nvml.read_gpus(), nvml.sample_gpus()
    gpu = gpus[0]
    assert (gpu.name, gpu.memory_total_mib, gpu.sm_count, gpu.compute_capability) == (name, memory, sms, cc)
    assert gpu.pci_bus_id == "00000000:07:00.0" and gpus[1].pci_bus_id == "00000000:0F:00.0"
    if links is None:
        assert gpu.nvlink_peers == ()
    else:
        assert [(p.uuid, p.links) for p in gpu.nvlink_peers] == [(gpus[1].uuid, links)]
    assert samples[0].power_w == idle_w
    assert samples[0].memory_used_mib == 0 and samples[0].memory_free_mib == memory
    assert samples[0].gpu_util_pct == 0


def test_nvml_names_find_the_same_model():
    assert fakenvml.find_model("Tesla T4").key == "T4"
    assert fakenvml.find_model("nvidia h100 80gb hbm3").key == "H100-SXM5-80GB"
    with pytest.raises(ValueError, match="unknown GPU model 'RTX 4090'.*known models: A100-SXM4-40GB"):
        fakenvml.find_model("RTX 4090")


def test_driver_and_cuda_versions_come_from_the_description(tmp_path):
    from fakegpu import write_node

    fakenvml.install(write_node(tmp_path, {"node": "n", "driver_version": "535.161.08", "cuda_version": "12.2",
                                           "gpus": [{"model": "T4"}]}))
    with Nvml() as nvml:
        assert (nvml.driver_version(), nvml.cuda_version()) == ("535.161.08", "12.2")
