"""MIG layouts read back with real profiles, UUIDs and placements; layouts the card cannot hold are refused."""

from __future__ import annotations

import pytest

from tessera import fakenvml
from tessera.nvml import Nvml

from fakegpu import one_model


def read(path):
    fakenvml.install(path)
    with Nvml() as nvml:
        return nvml.read_gpus()


def shape(gpu):
    return [(m.profile, m.placement_start, m.placement_size, m.memory_mib, m.sm_count, m.slices)
            for m in gpu.mig_instances]


def test_a100_40gb_mixed_layout_reads_back_with_placements(tmp_path):
    gpus = read(one_model(tmp_path, "A100-SXM4-40GB", count=1, mig=["1g.5gb", "4g.20gb", "2g.10gb"]))
    gpu = gpus[0]
    assert gpu.mig_enabled
    assert shape(gpu) == [
        ("4g.20gb", 0, 4, 19968, 56, 4),
        ("2g.10gb", 4, 2, 9856, 28, 2),
        ("1g.5gb", 6, 1, 4864, 14, 1),
    ]
    uuids = [m.uuid for m in gpu.mig_instances]
    assert all(u.startswith("MIG-") and len(u) == 40 for u in uuids) and len(set(uuids)) == 3
    assert sorted(m.gpu_instance_id for m in gpu.mig_instances) == [1, 2, 3]


def test_h100_seven_small_instances_take_every_slot(tmp_path):
    gpu = read(one_model(tmp_path, "H100-SXM5-80GB", count=1, mig=["1g.10gb"] * 7))[0]
    assert [(m.profile, m.placement_start, m.memory_mib, m.sm_count) for m in gpu.mig_instances] == [
        ("1g.10gb", start, 9984, 16) for start in range(7)
    ]


def test_a100_80gb_and_a30_profiles(tmp_path):
    a100 = read(one_model(tmp_path, "A100-SXM4-80GB", count=1, mig=["3g.40gb", "1g.20gb", "1g.20gb"]))[0]
    assert [(m.profile, m.placement_start, m.placement_size) for m in a100.mig_instances] == [
        ("3g.40gb", 0, 4), ("1g.20gb", 4, 2), ("1g.20gb", 6, 2)]
    fakenvml.uninstall()
    a30 = read(one_model(tmp_path, "A30", count=1, mig=["2g.12gb", "1g.6gb", "1g.6gb"]))[0]
    assert shape(a30) == [("2g.12gb", 0, 2, 12032, 28, 2), ("1g.6gb", 2, 1, 5952, 14, 1), ("1g.6gb", 3, 1, 5952, 14, 1)]


def test_a_fixed_start_is_kept(tmp_path):
    gpu = read(one_model(tmp_path, "A100-SXM4-40GB", count=1, mig=[{"profile": "3g.20gb", "start": 4}]))[0]
    assert shape(gpu)[0][:3] == ("3g.20gb", 4, 4)


def test_mig_uuids_are_stable_across_loads(tmp_path):
    path = one_model(tmp_path, "A100-SXM4-80GB", count=2, mig=["7g.80gb"])
    first = [m.uuid for g in read(path) for m in g.mig_instances]
    fakenvml.uninstall()
    assert [m.uuid for g in read(path) for m in g.mig_instances] == first


@pytest.mark.parametrize("model, layout, reason", [
    ("A100-SXM4-40GB", ["4g.20gb", "4g.20gb"], "2 x 4g.20gb asked, A100-SXM4-40GB holds at most 1"),
    ("A100-SXM4-40GB", ["3g.20gb", "3g.20gb", "1g.5gb"], "does not fit A100-SXM4-40GB"),
    ("A100-SXM4-40GB", ["1g.10gb"] * 4 + ["2g.10gb"], "no placement keeps the instances on allowed starts"),
    ("A100-SXM4-80GB", ["7g.80gb", "1g.10gb"], "needs 8 compute slices, A100-SXM4-80GB has 7"),
    ("A100-SXM4-80GB", ["1g.5gb"], "MIG profile '1g.5gb' does not exist on A100-SXM4-80GB"),
    ("A30", ["4g.24gb", "1g.6gb"], "needs 5 compute slices, A30 has 4"),
    ("H100-SXM5-80GB", [{"profile": "2g.20gb", "start": 6}], "2g.20gb may start at memory slice 0, 2, 4, not 6"),
    ("H100-SXM5-80GB", ["1g.10gb+me", "1g.10gb+me"], "holds at most 1"),
    ("T4", ["1g.5gb"], "T4 does not support MIG"),
])
def test_layouts_the_card_cannot_hold_are_refused(tmp_path, model, layout, reason):
    path = one_model(tmp_path, model, count=1, mig=layout)
    with pytest.raises(fakenvml.DescriptionError, match=reason) as caught:
        fakenvml.load_description(path)
    assert str(path) in str(caught.value) and "gpus[0]" in str(caught.value)


def test_non_mig_gpu_on_a_mig_capable_model_reports_mig_off(tmp_path):
    gpu = read(one_model(tmp_path, "A100-SXM4-80GB", count=1))[0]
    assert not gpu.mig_enabled and gpu.mig_instances == ()
