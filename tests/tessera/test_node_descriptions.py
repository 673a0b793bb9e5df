"""Node description files: the shipped ones load and read back; bad ones are refused by key."""

from __future__ import annotations

import re

import pytest
import yaml

from tessera import fakenvml
from tessera.fakenvml import DescriptionError, load_description, parse_description, shipped_node_descriptions
from tessera.nvml import Nvml

from fakegpu import write_node

EXPECTED_SHIPPED = {
    f"{m}-{layout}" for m in ("a100-40gb", "a100-80gb", "h100-80gb", "a30") for layout in ("whole", "mig", "mps")
} | {"t4-whole", "t4-timeslice", "t4-mps", "v100-16gb-whole", "v100-32gb-whole", "v100-32gb-timeslice"}


def test_every_catalog_model_has_shipped_nodes():
    assert set(shipped_node_descriptions()) == EXPECTED_SHIPPED


@pytest.mark.parametrize("name", sorted(EXPECTED_SHIPPED))
def test_shipped_description_reads_back_through_the_layer(name):
    path = shipped_node_descriptions()[name]
    doc = yaml.safe_load(path.read_text())
    fakenvml.install(path)
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    assert len(gpus) == sum(g.get("count", 1) for g in doc["gpus"])
    assert len(gpus) == (4 if name.startswith(("t4", "a30")) else 8)
    assert all(g.healthy for g in gpus)
    wanted_mig = [len(g.get("mig", [])) for g in doc["gpus"] for _ in range(g.get("count", 1))]
    assert [len(g.mig_instances) for g in gpus] == wanted_mig
    assert all(g.mig_enabled == name.endswith("-mig") for g in gpus)
    modes = {g.get("mode") for g in doc["gpus"]}
    assert modes == {{"whole": "exclusive"}.get(name.rsplit("-", 1)[1], name.rsplit("-", 1)[1])}


def test_identities_are_deterministic_and_in_real_formats(tmp_path):
    doc = {"node": "gpu-7", "gpus": [{"model": "A100-SXM4-80GB", "count": 8}]}
    first, again = parse_description(doc), parse_description(doc)
    other = parse_description({**doc, "node": "gpu-8"})
    assert [g.uuid for g in first.gpus] == [g.uuid for g in again.gpus]
    assert not {g.uuid for g in first.gpus} & {g.uuid for g in other.gpus}
    for g in first.gpus:
        assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", g.uuid)
        assert re.fullmatch(r"00000000:[0-9A-F]{2}:00\.0", g.pci_bus_id)
    assert len({g.pci_bus_id for g in first.gpus}) == 8
    assert [g.numa_node for g in first.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_numa_and_mode_per_gpu_entry(tmp_path):
    fakenvml.install(write_node(tmp_path, {"node": "n", "gpus": [
        {"model": "T4", "numa": 1, "mode": "timeslice"}, {"model": "T4", "numa": 0, "mode": "mps"}]}))
    with Nvml() as nvml:
        assert [g.numa_node for g in nvml.read_gpus()] == [1, 0]


def test_dgx1_hybrid_cube_mesh(tmp_path):
    fakenvml.install(shipped_node_descriptions()["v100-32gb-whole"])
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    index = {g.uuid: g.index for g in gpus}
    assert {index[p.uuid]: p.links for p in gpus[0].nvlink_peers} == {1: 1, 2: 1, 3: 2, 4: 2}
    assert all(sum(p.links for p in g.nvlink_peers) == 6 for g in gpus)
    assert not any(p.via_switch for g in gpus for p in g.nvlink_peers)


def test_explicit_nvlink_pairs(tmp_path):
    fakenvml.install(write_node(tmp_path, {"node": "n", "nvlink": [{"gpus": [0, 1], "links": 4}],
                                           "gpus": [{"model": "V100-SXM2-16GB", "count": 3}]}))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    assert [(p.uuid, p.links) for p in gpus[0].nvlink_peers] == [(gpus[1].uuid, 4)]
    assert gpus[2].nvlink_peers == ()


@pytest.mark.parametrize("doc, message", [
    ({"node": "n", "gpus": [{"model": "T4"}], "colour": "red"}, "unknown key 'colour'"),
    ({"node": "Bad_Name", "gpus": [{"model": "T4"}]}, "node: 'Bad_Name' is not a node name"),
    ({"node": "n", "gpus": []}, "gpus: a non-empty list"),
    ({"node": "n", "gpus": [{"model": "T4", "count": 0}]}, r"gpus\[0\]\.count: 0 is not a positive whole number"),
    ({"node": "n", "gpus": [{"model": "T4"}, {"model": "K80"}]}, r"gpus\[1\]\.model: unknown GPU model 'K80'"),
    ({"node": "n", "gpus": [{"model": "T4", "mode": "turbo"}]}, r"gpus\[0\]\.mode: 'turbo' is not one of exclusive, mig"),
    ({"node": "n", "gpus": [{"model": "T4", "speed": 3}]}, r"gpus\[0\]: unknown key 'speed'"),
    ({"node": "n", "gpus": [{"model": "A30", "mode": "mps", "mig": ["1g.6gb"]}]}, "a mig layout is given but mode is 'mps'"),
    ({"node": "n", "gpus": [{"model": "T4", "count": 2}], "nvlink": "all-to-all"}, "nvlink: all-to-all needs GPUs of one NVLink"),
    ({"node": "n", "gpus": [{"model": "V100-SXM2-16GB", "count": 2}], "nvlink": [{"gpus": [0, 5], "links": 1}]},
     r"nvlink: \[0\]\.gpus: \[0, 5\] is not two different GPU indexes"),
    ({"node": "n", "gpus": [{"model": "V100-SXM2-16GB", "count": 2}], "nvlink": [{"gpus": [0, 1], "links": 7}]},
     "would use 7 links, it has 6"),
    ({"node": "n", "cuda_version": "twelve", "gpus": [{"model": "T4"}]}, "cuda_version: 'twelve' is not a version"),
    ({"node": "n", "gpus": [{"model": "T4", "count": 2}], "minor_numbers": [0]}, "minor_numbers: .* one per GPU"),
    ({"node": "n", "gpus": [{"model": "T4", "count": 2}], "minor_numbers": [3, 3]}, "gives two GPUs one minor"),
    ({"node": "n", "gpus": [{"model": "T4"}], "minor_numbers": [255]}, "255 is not a GPU minor number 0..253"),
])
def test_bad_descriptions_name_the_key(tmp_path, doc, message):
    path = write_node(tmp_path, doc)
    with pytest.raises(DescriptionError, match=message) as caught:
        load_description(path)
    assert str(caught.value).startswith(str(path))


def test_unreadable_and_unparsable_files(tmp_path):
    with pytest.raises(DescriptionError, match="cannot read node description"):
        load_description(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("node: [unclosed\n")
    with pytest.raises(DescriptionError, match="not valid YAML or JSON"):
        load_description(broken)


def test_json_descriptions_load(tmp_path):
    path = tmp_path / "node.json"
    path.write_text('{"node": "j", "gpus": [{"model": "Tesla T4", "count": 4}]}')
    assert [g.model.key for g in load_description(path).gpus] == ["T4"] * 4
