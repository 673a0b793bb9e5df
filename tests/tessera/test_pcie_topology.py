"""PCIe topology through the NVML layer: ``GpuInfo.pcie_peers`` from ``nvmlDeviceGetTopologyCommonAncestor``."""

from __future__ import annotations

import pynvml
import pytest

from tessera.fakenvml import DescriptionError, install, parse_description, uninstall
from tessera.nvml import Nvml


@pytest.fixture
def node():
    def make(doc: dict):
        install(parse_description(doc))
        with Nvml() as nvml:
            gpus = nvml.read_gpus()
        return gpus
    yield make
    uninstall()


def levels(gpus) -> dict[tuple[int, int], str]:
    index = {g.uuid: g.index for g in gpus}
    return {(g.index, index[p.uuid]): p.level for g in gpus for p in g.pcie_peers}


def test_dgx_default_pairs_switches_halves_numa_nodes(node):
    lv = levels(node({"node": "dgx", "gpus": [{"model": "A100-SXM4-80GB", "count": 8}]}))
    assert len(lv) == 8 * 7, "every ordered pair of GPUs has a level"
    assert lv[(0, 1)] == lv[(6, 7)] == "multiple", "SXM boards: two switch levels per pair (PXB)"
    assert lv[(0, 3)] == lv[(5, 6)] == "node" and lv[(1, 2)] == "node"
    assert lv[(0, 4)] == lv[(3, 7)] == "system"
    assert all(lv[(a, b)] == lv[(b, a)] for a, b in lv), "symmetric"


def test_pcie_boards_share_a_single_switch(node):
    lv = levels(node({"node": "t4", "gpus": [{"model": "T4", "count": 4}]}))
    assert lv[(0, 1)] == lv[(2, 3)] == "single" and lv[(1, 2)] == "system"


def test_the_real_call_is_what_the_fake_answers(node):
    node({"node": "t4", "gpus": [{"model": "T4", "count": 4}]})
    pynvml.nvmlInit()
    try:
        a, b = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
        assert pynvml.nvmlDeviceGetTopologyCommonAncestor(a, b) == pynvml.NVML_TOPOLOGY_SINGLE
        assert pynvml.nvmlDeviceGetTopologyCommonAncestor(a, a) == pynvml.NVML_TOPOLOGY_INTERNAL
    finally:
        pynvml.nvmlShutdown()


def test_a_lost_gpu_has_no_levels_and_others_keep_theirs(node, tmp_path):
    from tessera.fakenvml import FaultInjector

    path = tmp_path / "t4.yaml"
    path.write_text("node: t4lost\ngpus: [{model: T4, count: 4}]\n")
    install(str(path))
    FaultInjector(path).lose_gpu(1)
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    lv = levels(gpus)
    assert gpus[1].error and not gpus[1].pcie_peers
    assert lv[(0, 2)] == "system" and lv[(2, 3)] == "single" and (0, 1) not in lv


@pytest.mark.parametrize("spec, says", [
    ([[0, 9]], "below 4"), ([[0, 1], [1, 2]], "already behind"), ([[1, 2]], "different NUMA"), ("pairs", "list"),
])
def test_bad_switch_lists_are_refused_by_name(spec, says):
    with pytest.raises(DescriptionError, match=f"pcie_switches.*{says}"):
        parse_description({"node": "t4", "gpus": [{"model": "T4", "count": 4}], "pcie_switches": spec})
