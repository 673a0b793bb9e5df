"""Several whole GPUs on a node without NVLink: the PCIe tree decides, read through the fake NVML.

A pair behind one PCIe switch beats a pair on one NUMA node, which beats a pair across CPU
sockets; NVLink still beats all of them; ``must_include`` and the kubelet's ``available`` still hold.
"""

from __future__ import annotations

import yaml

from deviceplugin.rm import HealthTracker, NodeDevices
from tessera.nvml import Nvml

GPU = "nvidia.com/gpu"


def node_gpus(tmp_path, monkeypatch, doc: dict):
    path = tmp_path / f"{doc['node']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(path))
    with Nvml() as nvml:
        return nvml.read_gpus()


def whole(gpus) -> NodeDevices:
    return NodeDevices(gpus, default_mode="exclusive", gpu_modes={}, replicas=1,
                       health=HealthTracker([43], [48, 79], 300.0))


def test_t4_pair_prefers_one_switch_then_one_numa_node_then_across_sockets(tmp_path, monkeypatch):
    gpus = node_gpus(tmp_path, monkeypatch, {"node": "t4x8", "gpus": [{"model": "T4", "count": 8}]})
    assert all(not g.nvlink_peers for g in gpus), "T4s have no NVLink"
    rm, ids = whole(gpus), [g.uuid for g in gpus]
    # GPUs 0-1, 2-3, 4-5, 6-7 share a switch; 0-3 and 4-7 a NUMA node.
    pick = lambda avail, must=(): sorted(ids.index(u) for u in rm.preferred(GPU, [ids[i] for i in avail],  # noqa: E731
                                                                            [ids[i] for i in must], 2))
    assert pick([0, 2, 4, 6, 7]) == [6, 7], "one switch beats the same NUMA node (0-2) and lower indexes"
    assert pick([1, 3, 4]) == [1, 3], "one NUMA node beats across sockets"
    assert pick([3, 4, 6]) == [4, 6], "one NUMA node beats across sockets, whatever the indexes"
    assert pick([0, 5]) == [0, 5], "across sockets when nothing else is offered"
    assert pick([0, 1, 2, 3], must=[2]) == [2, 3], "must_include: the best partner of GPU 2"
    assert pick([0, 1, 4, 5], must=[4]) == [4, 5]
    assert pick([2, 4, 5], must=[2]) in ([2, 4], [2, 5]), "must_include holds even across sockets"
    four = sorted(ids.index(u) for u in rm.preferred(GPU, ids, [], 4))
    assert four == [0, 1, 2, 3], "four GPUs: two switches on one NUMA node"


def test_t4x4_same_switch_over_across_sockets(tmp_path, monkeypatch):
    gpus = node_gpus(tmp_path, monkeypatch, {"node": "t4x4", "gpus": [{"model": "T4", "count": 4}]})
    rm, ids = whole(gpus), [g.uuid for g in gpus]
    assert sorted(ids.index(u) for u in rm.preferred(GPU, [ids[1], ids[2], ids[3]], [], 2)) == [2, 3]


def test_description_overrides_the_switches(tmp_path, monkeypatch):
    gpus = node_gpus(tmp_path, monkeypatch, {"node": "t4sw", "gpus": [{"model": "T4", "count": 4, "numa": 0}],
                                             "pcie_switches": [[0, 3], [1, 2]]})
    rm, ids = whole(gpus), [g.uuid for g in gpus]
    assert sorted(ids.index(u) for u in rm.preferred(GPU, [ids[0], ids[1], ids[3]], [], 2)) == [0, 3]


def test_nvlink_still_beats_one_switch(tmp_path, monkeypatch):
    # V100s wired 0-2 and 1-3 by NVLink only; PCIe switches pair 0-1 and 2-3.
    gpus = node_gpus(tmp_path, monkeypatch, {
        "node": "v100x4", "gpus": [{"model": "V100-SXM2-16GB", "count": 4, "numa": 0}],
        "nvlink": [{"gpus": [0, 2], "links": 2}, {"gpus": [1, 3], "links": 2}]})
    rm, ids = whole(gpus), [g.uuid for g in gpus]
    assert gpus[0].pcie_level(ids[1]) == "multiple" and gpus[0].pcie_level(ids[2]) == "node"
    assert sorted(ids.index(u) for u in rm.preferred(GPU, ids, [], 2)) == [0, 2], "NVLink pair wins"
    assert sorted(ids.index(u) for u in rm.preferred(GPU, ids[:2] + ids[3:], [ids[0]], 2)) == [0, 1], \
        "without its NVLink partner, GPU 0 takes its switch mate"
