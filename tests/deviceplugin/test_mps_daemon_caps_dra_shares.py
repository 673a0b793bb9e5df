"""The device plugin owns the node's MPS control daemon, also for the DRA driver's MPS GPUs: their
shares, as the driver's checkpoint records them, reach the daemon's defaults (the GPU's pinned-memory
cap at its largest share, the node-wide thread percentage at least the largest share's cores); a node
whose only MPS GPUs are the driver's still gets a supervised daemon; and a checkpoint that cannot be
read as one is logged once and leaves the driver's GPUs whole, the supervisor going on (against the
fake control daemon, in process and with the plugin in its own process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from deviceplugin.drashares import MAX_BYTES, DraMpsShares
from deviceplugin.mpsdaemon import MpsDaemon
from deviceplugin.rm import HealthTracker, NodeDevices
from dpharness import wait_until
from draplugin.checkpoint import Checkpoint, PreparedClaim, PreparedDevice
from simcluster.fakemps import CONTROL, running_daemons
from tessera.gpu import GpuInfo
from tessera.nvml import Nvml
from test_mps_daemon_slow_is_not_gone import NODES, supervisor

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def two_gpu_node(tmp_path: Path, monkeypatch) -> tuple[NodeDevices, GpuInfo, GpuInfo]:
    """GPU 0 the device plugin's (MPS), GPU 1 the DRA driver's MPS GPU (left out of the device plugin's
    resource manager, as its daemon leaves it out)."""
    description = tmp_path / "nvml.yaml"
    description.write_text((NODES / "a100-80gb-mps.yaml").read_text().replace("count: 8", "count: 2"))
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(description))
    with Nvml() as nvml:
        gpu0, gpu1 = nvml.read_gpus()
    rm = NodeDevices([gpu0], default_mode="mps", gpu_modes={}, replicas=4,
                     health=HealthTracker([43], [48, 79], 300.0), label_mode=None)
    return rm, gpu0, gpu1


def hold(rm: NodeDevices, gpu: GpuInfo, cores: int, gib: int) -> None:
    """A device-plugin pod holding ``cores`` and ``gib`` of ``gpu`` (the kubelet's pod-resources truth)."""
    rm.set_holdings([("pod-1", "main", CORE, tuple(f"{gpu.uuid}::core::{n}" for n in range(cores))),
                     ("pod-1", "main", MEM, tuple(f"{gpu.uuid}::mem::{n}" for n in range(gib)))])


def write_checkpoint(path: Path, *devices: tuple[str, int | None, int | None]) -> None:
    """The DRA driver's checkpoint, written by the driver's own class: one claim per (GPU UUID, cores, GiB)."""
    checkpoint = Checkpoint(str(path))
    checkpoint.claims.clear()
    for n, (uuid, cores, gib) in enumerate(devices):
        checkpoint.claims[f"uid-{n}"] = PreparedClaim("team-a", f"claim-{n}", [PreparedDevice(
            ["share"], "gpu-node", "gpu-1", [f"k8s.gpu.tessera.io/claim=uid-{n}-gpu-1"], uuid,
            share_id=f"share-{n}" if cores else None, mps_cores=cores, mps_memory_gib=gib)])
    with checkpoint.lock:
        checkpoint.save()


def defaults(daemon: MpsDaemon, *indices: int) -> tuple[float, list[str]]:
    """What the daemon holds: its thread percentage and the pinned-memory limit of each GPU index."""
    return (float(daemon.control("get_default_active_thread_percentage").strip()),
            [daemon.control(f"get_default_device_pinned_mem_limit {i}").strip() for i in indices])


def test_a_dra_share_sets_its_gpu_s_cap_and_raises_the_thread_percentage(tmp_path, monkeypatch, mps_root):
    rm, gpu0, gpu1 = two_gpu_node(tmp_path, monkeypatch)
    hold(rm, gpu0, 30, 8)
    path = tmp_path / "dra" / "checkpoint.json"
    # two shares on the DRA GPU; an entry naming the device plugin's GPU is not the driver's to cap
    write_checkpoint(path, (gpu1.uuid, 60, 20), (gpu1.uuid, 10, 24), (gpu0.uuid, 90, 70))
    sup = supervisor(rm, mps_root, dra=DraMpsShares(str(path), [gpu1]))
    sup.check()
    assert sup.check() is None, "the daemon answers"
    assert defaults(sup.daemon, 0, 1) == (60.0, ["8G", "24G"]), \
        "GPU 1 capped at its largest DRA share, the node-wide percentage at its largest cores, GPU 0 at its own grant"

    write_checkpoint(path, (gpu1.uuid, 90, 30))   # another claim prepared, the others gone
    sup.check()
    assert defaults(sup.daemon, 0, 1) == (90.0, ["8G", "30G"])

    write_checkpoint(path)   # every DRA claim unprepared
    sup.check()
    assert defaults(sup.daemon, 0, 1) == (30.0, ["8G", "80G"]), "no share left: the whole card, as without grants"


def test_a_device_recorded_before_shares_were_leaves_its_gpu_whole(tmp_path, monkeypatch, mps_root):
    rm, gpu0, gpu1 = two_gpu_node(tmp_path, monkeypatch)
    hold(rm, gpu0, 30, 8)
    path = tmp_path / "dra" / "checkpoint.json"
    write_checkpoint(path, (gpu1.uuid, 10, 4), (gpu1.uuid, None, None))   # the second: an old driver's record
    assert "mps_cores" not in json.loads(path.read_text())["claims"]["uid-1"]["devices"][0], \
        "the share's keys are written only where set (a driver from before them reads the file)"
    sup = supervisor(rm, mps_root, dra=DraMpsShares(str(path), [gpu1]))
    sup.check()
    assert sup.check() is None
    assert defaults(sup.daemon, 0, 1) == (100.0, ["8G", "80G"]), "a share of unknown size: never capped below the card"


def _fifo(path: Path) -> None:
    os.mkfifo(path)


HOSTILE = {
    "garbled": lambda p: p.write_bytes(b"\x00{\"version\": 1, \"claims\": {\xff"),
    "half_written": lambda p: p.write_text('{"version": 1, "claims": {"u": {"devices": [{"uuid": "GPU-'),
    "another_version": lambda p: p.write_text('{"version": 9, "claims": {}}'),
    "devices_not_a_list": lambda p: p.write_text('{"version": 1, "claims": {"u": {"devices": {"uuid": 1}}}}'),
    "uuid_not_a_string": lambda p: p.write_text('{"version": 1, "claims": {"u": {"devices": [{"uuid": ["x"]}]}}}'),
    "deeply_nested": lambda p: p.write_text('{"version": 1, "claims": ' + "[" * 200_000 + "]" * 200_000 + "}"),
    "too_large": lambda p: p.write_bytes(b" " * (MAX_BYTES + 1)),
    "a_fifo": _fifo,
    "a_link_to_a_device": lambda p: p.symlink_to("/dev/zero"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE) + ["share_out_of_range"])
def test_a_hostile_checkpoint_is_logged_once_and_leaves_the_dra_gpu_whole(kind, tmp_path, monkeypatch,
                                                                           mps_root):
    rm, gpu0, gpu1 = two_gpu_node(tmp_path, monkeypatch)
    hold(rm, gpu0, 30, 8)
    path = tmp_path / "dra" / "checkpoint.json"
    path.parent.mkdir()

    def spoil() -> None:
        path.unlink(missing_ok=True)
        if kind == "share_out_of_range":
            write_checkpoint(path, (gpu1.uuid, 10, 4))
            doc = json.loads(path.read_text())
            doc["claims"]["uid-0"]["devices"][0]["mps_cores"] = 500
            path.write_text(json.dumps(doc))
        else:
            HOSTILE[kind](path)

    spoil()
    sup = supervisor(rm, mps_root, dra=DraMpsShares(str(path), [gpu1]))
    with capture_logs() as logs:
        sup.check()
        results = [sup.check()]
        spoil()   # written again, as badly
        results.append(sup.check())
    assert results == [None, None], "the supervisor goes on: the daemon answers"
    assert defaults(sup.daemon, 0, 1) == (100.0, ["8G", "80G"]), "unknown shares: the DRA GPU whole, 100 %"
    events = [e for e in logs if e["event"] == "dra_checkpoint_unreadable"]
    assert len(events) == 1 and events[0]["path"] == str(path), "one event, not one per round"
    assert not [e for e in logs if e["event"] == "mps_supervision_failed"]


def test_a_node_whose_only_mps_gpus_are_the_dra_driver_s_gets_a_supervised_daemon(
        make_node, start_plugin, kubelet, monkeypatch):
    node = make_node("a100-80gb-mps.yaml")
    node.description.write_text(node.description.read_text().replace("count: 8", "count: 2"))
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(node.description))
    with Nvml() as nvml:
        gpu0, gpu1 = nvml.read_gpus()
    dra_dir = node.root / "dra"
    write_checkpoint(dra_dir / "checkpoint.json", (gpu1.uuid, 40, 12))
    config = node.root / "tessera.yaml"   # the node config both daemons read
    config.write_text(yaml.safe_dump({"version": "v1", "draplugin": {
        "gpus": [0, 1], "gpu_modes": {0: "mps", 1: "mps"}, "plugin_path": str(dra_dir)}}))
    kubelet(node)
    start_plugin(node, config=str(config))
    daemon = MpsDaemon(CONTROL, str(node.mps["pipe"]), str(node.mps["log"]))
    wait_until(lambda: running_daemons(node.mps["pipe"]), timeout=60, what="an MPS daemon the plugin started")

    def settled():
        try:
            return defaults(daemon, 0, 1) == (40.0, ["80G", "12G"])
        except (OSError, RuntimeError):
            return False
    wait_until(settled, timeout=60, what="the daemon's defaults from the DRA driver's shares")
    assert len(running_daemons(node.mps["pipe"])) == 1
