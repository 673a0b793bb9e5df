"""The resource manager without gRPC: resources per mode, modes and drains, NVLink-aware choice, requests."""

from __future__ import annotations

import shutil

import pytest

from deviceplugin.rm import HealthTracker, NodeDevices, RequestError
from tessera.gpu import GpuEvent
from tessera.nvml import Nvml

REPO_NODES = __import__("pathlib").Path(__file__).resolve().parents[2] / "tessera" / "nodes"
GPU, CORE, MEM, SHARED = "nvidia.com/gpu", "nvidia.com/mps-core", "nvidia.com/mps-memory", "nvidia.com/gpu.shared"


def read_gpus(tmp_path, monkeypatch, description: str):
    path = tmp_path / description
    shutil.copy(REPO_NODES / description, path)
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(path))
    with Nvml() as nvml:
        return nvml.read_gpus()


def manager(gpus, default="mps", gpu_modes=None, label=None, quiet=300.0) -> NodeDevices:
    return NodeDevices(gpus, default_mode=default, gpu_modes=gpu_modes or {}, replicas=4,
                       health=HealthTracker([43], [48, 79], quiet), label_mode=label)


def test_each_gpu_is_advertised_in_exactly_one_mode(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus, default="mps", gpu_modes={1: "exclusive", 2: "timeslice"})
    assert rm.resources() == [GPU, SHARED, CORE, MEM] or set(rm.resources()) == {GPU, SHARED, CORE, MEM}
    owners: dict[str, set[str]] = {}
    for resource in rm.resources():
        for device, _ in rm.listing(resource):
            owners.setdefault(device.gpu_uuid, set()).add(resource if resource != MEM else CORE)
    assert all(len(r) == 1 for r in owners.values()), "no GPU offers two modes' resources"
    assert len(rm.listing(GPU)) == 1 and len(rm.listing(SHARED)) == 4
    assert len(rm.listing(CORE)) == 600 and len(rm.listing(MEM)) == 480


def test_label_overrides_default_and_per_index_config_wins(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus, default="exclusive", gpu_modes={0: "mps"}, label="timeslice")
    assert rm.active_modes()[0] == "mps" and all(rm.active_modes()[i] == "timeslice" for i in range(1, 8))


def test_mode_change_waits_for_the_gpu_to_drain(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus, default="mps")
    busy = gpus[0].uuid
    rm.set_holdings([("pod-1", "main", CORE, (f"{busy}::core::0",))])
    assert rm.set_label_mode("exclusive")
    assert rm.active_modes()[0] == "mps" and rm.pending_modes() == {0: "exclusive"}
    assert rm.active_modes()[1] == "exclusive"
    inventory = rm.inventory("n")
    assert inventory.gpus[0].pending_mode == "exclusive" and inventory.gpus[0].mode == "mps"
    rm.set_holdings([])  # the pod ended
    assert rm.active_modes()[0] == "exclusive" and rm.pending_modes() == {}
    assert len(rm.listing(GPU)) == 8 and rm.listing(CORE) == []


def test_several_whole_gpus_are_the_best_linked_set(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "v100-16gb-whole.yaml")  # DGX-1 hybrid cube-mesh
    rm = manager(gpus, default="exclusive")
    ids = [g.uuid for g in gpus]
    index = {g.uuid: g.index for g in gpus}
    links = {(a.index, index[p.uuid]): p.links for a in gpus for p in a.nvlink_peers}
    pair = rm.preferred(GPU, ids, [], 2)
    assert links.get((index[pair[0]], index[pair[1]])) == 2, "two GPUs: a pair joined by two NVLinks"
    with_six = rm.preferred(GPU, ids, [ids[6]], 2)
    assert with_six[0] == ids[6] and links.get((6, index[with_six[1]])) == 2, "must_include is honoured"
    numa0 = [g.uuid for g in gpus if g.numa_node == gpus[0].numa_node][:4]
    four = rm.preferred(GPU, numa0, [], 4)
    assert sorted(four) == sorted(numa0), "only what the kubelet offers (a NUMA-restricted set)"
    quad = rm.preferred(GPU, ids, [], 4)
    quad_links = sum(links.get((index[a], index[b]), 0) for a in quad for b in quad if a < b)
    assert quad_links >= 6, f"four GPUs from one fully linked quad, got {quad_links} links"


def test_mps_best_fit_packs_core_and_memory_on_one_gpu(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus)
    uuid = gpus[4].uuid
    rm.set_holdings([("a", "main", CORE, tuple(f"{uuid}::core::{n}" for n in range(60))),
                     ("a", "main", MEM, tuple(f"{uuid}::mem::{n}" for n in range(20)))])
    avail_core = [d.id for d, _ in rm.listing(CORE) if not (d.gpu_uuid == uuid and int(d.id.rsplit("::", 1)[1]) < 60)]
    chosen = rm.preferred(CORE, avail_core, [], 30, other_need=8)
    assert {i.split("::")[0] for i in chosen} == {uuid}, "the fullest GPU that still fits"
    too_much_memory = rm.preferred(CORE, avail_core, [], 30, other_need=70)
    assert {i.split("::")[0] for i in too_much_memory} != {uuid}, "memory must fit on that GPU too"


def test_requests_that_cannot_be_given_fail_with_a_reason(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus)
    a, b = gpus[0].uuid, gpus[1].uuid
    with pytest.raises(RequestError, match="span several GPUs"):
        rm.check(CORE, [f"{a}::core::{n}" for n in range(30)] + [f"{b}::core::{n}" for n in range(20)])
    with pytest.raises(RequestError, match="not whole hundreds"):
        rm.check(CORE, [f"{a}::core::{n}" for n in range(100)] + [f"{b}::core::{n}" for n in range(50)])
    with pytest.raises(RequestError, match="beyond one card"):
        rm.check(MEM, [f"{a}::mem::{n}" for n in range(80)] + [f"{b}::mem::{n}" for n in range(10)])
    assert rm.check(CORE, [f"{g.uuid}::core::{n}" for g in gpus[:2] for n in range(100)]).core == 200
    core = rm.check(CORE, [f"{a}::core::{n}" for n in range(10)])
    rm.pair_check(core, ("pod", "main"))
    with pytest.raises(RequestError, match="same card"):
        rm.pair_check(rm.check(MEM, [f"{b}::mem::0"]), ("pod", "main"))


def test_health_rules(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    now = [0.0]
    health = HealthTracker([43], [48, 79], 10.0, clock=lambda: now[0])
    xid = lambda i, x: GpuEvent("xid", i, gpus[i].uuid, xid=x)  # noqa: E731
    assert not health.on_event(xid(0, 43))
    assert health.on_event(xid(1, 62)) and not health.healthy(1)
    now[0] = 9.0
    assert not health.tick()
    now[0] = 10.5
    assert health.tick() and health.healthy(1)
    assert health.on_event(xid(2, 48))
    now[0] = 1000.0
    assert not health.tick() and not health.healthy(2), "fatal stays out"
    assert not health.on_read(2, None), "reading well without a reset does not bring it back"
    health.on_read(2, "gpu lost from the bus")
    assert health.on_read(2, None) and health.healthy(2), "after a reset (unreadable, then fine) it is back"


def test_fewer_timeslice_replicas_wait_while_a_replica_is_held(tmp_path, monkeypatch):
    """A config reload lowering timeslice_replicas: a held replica's ID must not vanish from under its pod."""
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus, default="exclusive", gpu_modes={0: "timeslice"})
    held = [d.id for d, _ in rm.listing(SHARED)][-1]
    rm.set_holdings([("pod-1", "main", SHARED, (held,))])
    rm.set_mode_settings("exclusive", {0: "timeslice"}, 2)
    assert len(rm.listing(SHARED)) == 4 and rm.timeslice_replicas == 4, "held: the four stay"
    rm.set_holdings([])   # the pod ended
    assert len(rm.listing(SHARED)) == 2 and rm.timeslice_replicas == 2
    rm.set_mode_settings("exclusive", {0: "timeslice"}, 6)   # more replicas never wait
    assert len(rm.listing(SHARED)) == 6


def test_a_gpu_newly_in_mps_mode_serves_only_once_the_mps_daemon_answers(tmp_path, monkeypatch):
    gpus = read_gpus(tmp_path, monkeypatch, "a100-80gb-mps.yaml")
    rm = manager(gpus, default="exclusive")
    rm.supervise_mps()
    assert rm.set_label_mode("mps")
    assert rm.listing(CORE) and not any(healthy for _, healthy in rm.listing(CORE)), "no daemon confirmed yet"
    rm.set_mps_down(None)   # the supervisor's first answer
    assert all(healthy for _, healthy in rm.listing(CORE))
