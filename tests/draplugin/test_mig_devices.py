"""MIG as partitionable devices: a ``mig`` GPU published as every profile's placements over one counter
set, and each claim's MIG device made at NodePrepareResources and removed at NodeUnprepareResources on
the fake NVML, through the driver's real unix socket."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from draharness import KEY, NODE, claim
from draplugin.devices import counter_set, mig_device_entry, mig_partitions, select_gpus
from draplugin.slices import MAX_DEVICES, wanted_slices
from tessera import fakenvml
from tessera.fakenvml.control import FaultInjector
from tessera.grant import container_env, verify_env
from tessera.nvml import Nvml

sys.path.insert(0, str(Path(__file__).parents[1] / "tessera"))
from fakegpu import write_node  # noqa: E402
from test_prepare_and_unprepare import edits_of, prepare, unprepare  # noqa: E402

UID_A, UID_B = "11111111-aaaa-4000-8000-00000000000a", "22222222-bbbb-4000-8000-00000000000b"
DESCRIPTION = {"node": NODE, "minor_numbers": [3, 1],
               "gpus": [{"model": "A100-SXM4-40GB", "count": 1, "mode": "mig"}, {"model": "A100-SXM4-40GB", "count": 1}]}


@pytest.fixture
def mig_gpu(tmp_path):
    """GPU 0 (minor 3) in MIG mode with nothing made on it, as the driver's ``mig`` GPU: (its published
    devices by name, its placements, an open Nvml, the description's path)."""
    path = write_node(tmp_path, DESCRIPTION)
    fakenvml.install(path)
    nvml = Nvml().open()
    (parent,) = select_gpus(nvml.read_gpus(), [0], {0: "mig"})
    placements = nvml.mig_placements(0)
    yield {m.name: m for m in mig_partitions(parent, placements)}, placements, nvml, path
    nvml.close()
    fakenvml.uninstall()


def made(nvml: Nvml) -> list[tuple[str, int]]:
    return [(m.profile, m.placement_start) for m in nvml.read_gpus()[0].mig_instances]


def test_a_mig_gpu_is_every_profile_s_placements_over_one_counter_set(mig_gpu):
    published, placements, _, _ = mig_gpu
    # 7 x 1g.5gb, 4 x 1g.10gb, 3 x 2g, 2 x 3g, 4g, 7g; no +me profile
    assert len(published) == 18 and not any("me" in name for name in published)
    three = mig_device_entry(published["gpu-0-mig-3g-20gb-4"], "550.54.15")
    attrs = three["attributes"]
    assert (attrs["profile"], attrs["migPlacementStart"], attrs["type"]) == (
        {"string": "3g.20gb"}, {"int": 4}, {"string": "mig"})
    assert "uuid" not in attrs and attrs["parentUUID"]["string"].startswith("GPU-")
    assert three["consumesCounters"] == [{"counterSet": "gpu-0-mig", "counters": {
        **{f"memory-slice-{k}": {"value": "1"} for k in (4, 5, 6, 7)}, "compute-slices": {"value": "3"}}}]
    counters = counter_set(published["gpu-0-mig-3g-20gb-4"].parent, placements)
    assert counters == {"name": "gpu-0-mig", "counters": {
        **{f"memory-slice-{k}": {"value": "1"} for k in range(8)}, "compute-slices": {"value": "7"}}}


def test_counters_go_in_a_slice_of_their_own_and_devices_at_most_64_a_slice(mig_gpu):
    published, placements, _, _ = mig_gpu
    node = {"metadata": {"name": NODE, "uid": "u-1"}}
    entries = [mig_device_entry(m, "550.54.15") for m in published.values()] * 4   # 72 devices
    slices = wanted_slices(node, "gpu.tessera.io", entries, [counter_set(next(iter(published.values())).parent,
                                                                        placements)], 3)
    assert [len(s["spec"].get("devices", [])) for s in slices] == [MAX_DEVICES, 72 - MAX_DEVICES, 0]
    assert "devices" not in slices[2]["spec"] and slices[2]["spec"]["sharedCounters"][0]["name"] == "gpu-0-mig"
    assert {(s["spec"]["pool"]["name"], s["spec"]["pool"]["generation"], s["spec"]["pool"]["resourceSliceCount"])
            for s in slices} == {(NODE, 3, 3)}
    assert len({s["metadata"]["name"] for s in slices}) == 3


def test_prepare_makes_the_claim_s_mig_device_and_unprepare_removes_it(driver, mig_gpu):
    published, _, nvml, _ = mig_gpu
    d = driver({("team-a", "infer"): claim("infer", UID_A, [("mig", "gpu-0-mig-3g-20gb-4")])},
               published=published, mig=nvml)
    answer = prepare(d, ("team-a", "infer", UID_A)).claims[UID_A]
    assert answer.error == ""
    (instance,) = nvml.read_gpus()[0].mig_instances
    assert (instance.profile, instance.placement_start) == ("3g.20gb", 4)
    edits = edits_of(d, UID_A)[f"{UID_A}-gpu-0-mig-3g-20gb-4"]
    gi_cap, ci_cap = instance.capability_minors
    assert {n["path"] for n in edits["deviceNodes"]} == {
        "/dev/nvidia3", f"/dev/nvidia-caps/nvidia-cap{gi_cap}", f"/dev/nvidia-caps/nvidia-cap{ci_cap}",
        "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
    env = dict(item.split("=", 1) for item in edits["env"])
    (grant_name,) = [n for n in env if n.startswith("TESSERA_GRANT_")]
    grant = verify_env(grant_name, env[grant_name], KEY)
    assert grant.resource == "nvidia.com/mig-3g.20gb" and grant.uuids == [instance.uuid]
    assert env["NVIDIA_VISIBLE_DEVICES"] == instance.uuid
    assert {k: v for k, v in env.items() if k != grant_name} == container_env([grant])
    assert prepare(d, ("team-a", "infer", UID_A)).claims[UID_A].devices[0].device_name == "gpu-0-mig-3g-20gb-4"
    assert made(nvml) == [("3g.20gb", 4)]   # the repeat made nothing more
    assert unprepare(d, ("team-a", "infer", UID_A)).claims[UID_A].error == ""
    assert made(nvml) == []
    assert unprepare(d, ("team-a", "infer", UID_A)).claims[UID_A].error == ""


def test_a_placement_already_taken_fails_that_claim_alone_and_makes_nothing(driver, mig_gpu):
    published, _, nvml, _ = mig_gpu
    d = driver({("team-a", "a"): claim("a", UID_A, [("mig", "gpu-0-mig-3g-20gb-4")]),
                ("team-a", "b"): claim("b", UID_B, [("mig", "gpu-0-mig-2g-10gb-4")])}, published=published, mig=nvml)
    answers = prepare(d, ("team-a", "a", UID_A), ("team-a", "b", UID_B)).claims
    assert answers[UID_A].error == ""
    assert "INSUFFICIENT_RESOURCES" in answers[UID_B].error and "2g.10gb" in answers[UID_B].error
    assert made(nvml) == [("3g.20gb", 4)]


def test_a_claim_failing_halfway_removes_the_devices_it_made(driver, mig_gpu):
    published, _, nvml, _ = mig_gpu
    d = driver({("team-a", "two"): claim("two", UID_A, [("first", "gpu-0-mig-1g-5gb-0"),
                                                          ("second", "gpu-0-mig-2g-10gb-0")])},
               published=published, mig=nvml)
    answer = prepare(d, ("team-a", "two", UID_A)).claims[UID_A]
    assert "INSUFFICIENT_RESOURCES" in answer.error
    assert made(nvml) == [] and UID_A not in d.checkpoint.claims


def test_a_device_still_in_use_is_not_removed_and_the_claim_stays_known_after_a_restart(driver, mig_gpu):
    published, _, nvml, path = mig_gpu
    d = driver({("team-a", "infer"): claim("infer", UID_A, [("mig", "gpu-0-mig-1g-5gb-6")])},
               published=published, mig=nvml)
    assert prepare(d, ("team-a", "infer", UID_A)).claims[UID_A].error == ""
    (instance,) = nvml.read_gpus()[0].mig_instances
    FaultInjector(path).set_processes(0, [(4242, 512)], gpu_instance_id=instance.gpu_instance_id)
    assert "IN_USE" in unprepare(d, ("team-a", "infer", UID_A)).claims[UID_A].error
    d.start()   # a restart: the checkpoint still knows which MIG device the claim got
    assert UID_A in d.checkpoint.claims and json.loads(d.checkpoint.path.read_text())["claims"][UID_A]["devices"][0][
        "gpu_instance_id"] == instance.gpu_instance_id
    FaultInjector(path).set_processes(0, [], gpu_instance_id=instance.gpu_instance_id)
    assert unprepare(d, ("team-a", "infer", UID_A)).claims[UID_A].error == ""
    assert made(nvml) == [] and UID_A not in d.checkpoint.claims


def test_a_pool_left_in_two_generations_is_written_whole_again(mig_gpu):
    """A write of the pool that stopped half way (the devices slice at the new generation, the counters
    slice still at the old) is rewritten, though each slice's content is what is wanted."""
    from unittest import mock

    from draplugin.slices import SlicePublisher

    published, placements, _, _ = mig_gpu
    node = {"metadata": {"name": NODE, "uid": "u-1"}}
    entries = [mig_device_entry(m, "550.54.15") for m in published.values()]
    sets = [counter_set(next(iter(published.values())).parent, placements)]
    held = wanted_slices(node, "gpu.tessera.io", entries, sets, 4)
    held[1]["spec"]["pool"]["generation"] = 3
    for n, s in enumerate(held):
        s["metadata"]["resourceVersion"] = str(n + 1)
    publisher = SlicePublisher.__new__(SlicePublisher)
    publisher.node, publisher.driver = NODE, "gpu.tessera.io"
    publisher.devices, publisher.counter_sets = lambda: entries, lambda: sets
    publisher.published = mock.Mock()
    publisher.core, publisher.objects = mock.Mock(), mock.Mock()
    publisher.core.read_node.return_value.data = json.dumps(node).encode()
    publisher.objects.list_cluster_custom_object.return_value.data = json.dumps(
        {"metadata": {"resourceVersion": "9"}, "items": held}).encode()
    publisher.reconcile()
    written = [c.args[4] for c in publisher.objects.replace_cluster_custom_object.call_args_list]
    assert {w["spec"]["pool"]["generation"] for w in written} == {5} and len(written) == 2


def test_more_than_eight_mig_gpus_put_their_counter_sets_eight_a_slice():
    node = {"metadata": {"name": NODE, "uid": "u-1"}}
    sets = [{"name": f"gpu-{i}-mig", "counters": {"compute-slices": {"value": "7"}}} for i in range(10)]
    slices = wanted_slices(node, "gpu.tessera.io", [], sets, 1)
    assert [len(s["spec"].get("sharedCounters", [])) for s in slices] == [0, 8, 2]
    assert len({s["metadata"]["name"] for s in slices}) == 3


def test_at_start_the_driver_removes_what_no_claim_holds_even_a_gpu_instance_left_alone(mig_gpu, tmp_path):
    """A crash between making a GPU instance and its compute instance leaves a GPU instance with no MIG
    device in it; one between making a device and recording it leaves a device no claim holds: both would
    block their placements for ever. The driver's start removes them and keeps what its checkpoint holds."""
    import pynvml

    from draplugin.checkpoint import Checkpoint, PreparedClaim, PreparedDevice
    from draplugin.daemon import DraPluginDaemon

    published, placements, nvml, _ = mig_gpu
    held = nvml.create_mig_device(0, next(p for p in placements if (p.profile, p.start) == ("3g.20gb", 4)))
    nvml.create_mig_device(0, next(p for p in placements if (p.profile, p.start) == ("1g.5gb", 0)))
    bare = next(p for p in placements if (p.profile, p.start) == ("2g.10gb", 2))
    pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(
        pynvml.nvmlDeviceGetHandleByIndex(0), bare.profile_id,
        pynvml.c_nvmlGpuInstancePlacement_t(start=bare.start, size=bare.size))
    assert len(nvml.gpu_instance_ids(0)) == 3
    checkpoint = Checkpoint(str(tmp_path / "checkpoint.json"))
    checkpoint.claims["u-1"] = PreparedClaim("team-a", "infer", [PreparedDevice(
        ["mig"], NODE, "gpu-0-mig-3g-20gb-4", [], held.uuid, gpu_index=0, gpu_instance_id=held.gpu_instance_id)])
    daemon = DraPluginDaemon.__new__(DraPluginDaemon)
    daemon.mig_gpus = [(next(iter(published.values())).parent, placements)]
    daemon._remove_unheld_mig_devices(nvml, checkpoint)
    assert nvml.gpu_instance_ids(0) == [held.gpu_instance_id] and made(nvml) == [("3g.20gb", 4)]
