"""GPU Feature Discovery's labels on the Node: the set per GPU mode, `leave`, uninstall, another writer's labels.

The plugin's inventory writer runs against the embedded API server on fake-NVML nodes (T4, A100 with MIG);
the labels are those GFD (NVIDIA/k8s-device-plugin, internal/lm) writes for the same node, where Tessera
can know them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deviceplugin.apiclient import connect
from deviceplugin.main import main as device_plugin_main
from deviceplugin.nodeinfo import NodeInfoWriter
from deviceplugin.nodelabels import ANNOTATION_OWNED_LABELS, label_plan
from deviceplugin.rm import HealthTracker, NodeDevices
from simcluster.apiserver import ApiServer
from tessera import LABEL_GPU_MODE
from tessera.config import ConfigError, DevicePluginConfig, parse_config
from tessera.nvml import Nvml

NODES = Path(__file__).resolve().parents[2] / "tessera" / "nodes"
VERSIONS = {"nvidia.com/cuda.driver.major": "550", "nvidia.com/cuda.driver.minor": "54",
            "nvidia.com/cuda.driver.rev": "15", "nvidia.com/cuda.driver-version.major": "550",
            "nvidia.com/cuda.driver-version.minor": "54", "nvidia.com/cuda.driver-version.revision": "15",
            "nvidia.com/cuda.driver-version.full": "550.54.15", "nvidia.com/cuda.runtime.major": "12",
            "nvidia.com/cuda.runtime.minor": "4", "nvidia.com/cuda.runtime-version.major": "12",
            "nvidia.com/cuda.runtime-version.minor": "4", "nvidia.com/cuda.runtime-version.full": "12.4"}
T4 = {"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "4", "nvidia.com/gpu.memory": "15360",
      "nvidia.com/gpu.family": "turing", "nvidia.com/gpu.compute.major": "7", "nvidia.com/gpu.compute.minor": "5",
      "nvidia.com/mig.capable": "false", **VERSIONS}


@pytest.fixture
def api(tmp_path):
    with ApiServer(host="127.0.0.1", port=0) as server:
        server.kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server


def add_node(api: ApiServer, name: str, labels: dict[str, str] | None = None) -> None:
    api.registry.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": name, "labels": dict(labels or {})}})


def node_meta(api: ApiServer, name: str) -> tuple[dict[str, str], dict[str, str]]:
    meta = api.registry.get("nodes", name)["metadata"]
    return meta.get("labels") or {}, meta.get("annotations") or {}


def gpu_node(tmp_path, monkeypatch, description: str, mode: str) -> NodeDevices:
    path = tmp_path / description
    shutil.copy(NODES / description, path)
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(path))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    return NodeDevices(gpus, default_mode=mode, gpu_modes={}, replicas=4, health=HealthTracker([43], [48], 300.0),
                       label_mode=None)


def run_writer(api: ApiServer, rm: NodeDevices, node: str, gfd: str = "write") -> dict[str, str]:
    """Start the plugin's inventory writer until it has written the Node once; the Node's labels."""
    writer = NodeInfoWriter(connect(api.kubeconfig, node), rm, node, carried_over=True, gfd=gfd,
                            versions=("550.54.15", "12.4"))
    writer.start()
    try:
        assert writer.written.wait(10), "the writer wrote the Node"
    finally:
        writer.stop()
    return node_meta(api, node)[0]


def gfd(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith("nvidia.com/")}


def test_an_exclusive_t4_node_gets_gfds_labels_and_records_them_as_its_own(api, tmp_path, monkeypatch):
    add_node(api, "t4")
    labels = run_writer(api, gpu_node(tmp_path, monkeypatch, "t4-whole.yaml", "exclusive"), "t4")
    assert gfd(labels) == {**T4, "nvidia.com/gpu.replicas": "1", "nvidia.com/gpu.sharing-strategy": "none",
                           "nvidia.com/mps.capable": "false"}
    assert labels[LABEL_GPU_MODE] == "exclusive"
    owned = json.loads(node_meta(api, "t4")[1][ANNOTATION_OWNED_LABELS])
    assert owned == {k: v for k, v in labels.items() if k != "kubernetes.io/hostname"}


def test_a_time_sliced_node_says_time_slicing_and_its_replicas(api, tmp_path, monkeypatch):
    add_node(api, "ts")
    labels = run_writer(api, gpu_node(tmp_path, monkeypatch, "t4-timeslice.yaml", "timeslice"), "ts")
    # GFD adds -SHARED only where nvidia.com/gpu itself is replicated; Tessera's replicas are
    # nvidia.com/gpu.shared (GFD's renamed case), so the model selector stays Tesla-T4.
    assert gfd(labels) == {**T4, "nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing",
                           "nvidia.com/mps.capable": "false"}


def test_an_mps_node_is_mps_capable_with_a_hundred_replicas(api, tmp_path, monkeypatch):
    add_node(api, "mps")
    labels = run_writer(api, gpu_node(tmp_path, monkeypatch, "a100-80gb-mps.yaml", "mps"), "mps")
    assert labels["nvidia.com/mps.capable"] == "true"
    assert labels["nvidia.com/gpu.sharing-strategy"] == "mps" and labels["nvidia.com/gpu.replicas"] == "100"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB" and labels["nvidia.com/gpu.family"] == "ampere"
    assert labels["nvidia.com/mig.capable"] == "true" and labels["nvidia.com/mig.strategy"] == "mixed"
    assert not any(k.startswith("nvidia.com/mig-") for k in labels), "no MIG instances, no per-profile labels"


def test_a_mig_node_gets_gfds_mixed_strategy_labels_per_profile(api, tmp_path, monkeypatch):
    add_node(api, "mig")
    labels = run_writer(api, gpu_node(tmp_path, monkeypatch, "a100-40gb-mig.yaml", "mig"), "mig")
    assert labels["nvidia.com/mig.capable"] == "true" and labels["nvidia.com/mig.strategy"] == "mixed"
    # MIG-enabled cards: GFD labels them without sharing (replicas 0)
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB" and labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.replicas"] == "0" and labels["nvidia.com/gpu.sharing-strategy"] == "none"
    one = {k.removeprefix("nvidia.com/mig-1g.5gb."): v for k, v in labels.items()
           if k.startswith("nvidia.com/mig-1g.5gb.")}
    assert one == {"product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "count": "30", "replicas": "1",
                   "sharing-strategy": "none", "memory": "4864", "multiprocessors": "14", "slices.gi": "1",
                   "slices.ci": "1", "engines.copy": "1", "engines.decoder": "1", "engines.encoder": "0",
                   "engines.jpeg": "0", "engines.ofa": "0"}
    assert labels["nvidia.com/mig-3g.20gb.count"] == "4" and labels["nvidia.com/mig-4g.20gb.count"] == "2"
    assert labels["nvidia.com/mig-2g.10gb.slices.gi"] == "2"
    assert labels["nvidia.com/mps.capable"] == "false"


def test_leave_writes_no_nvidia_label_and_gives_up_those_it_wrote(api, tmp_path, monkeypatch):
    add_node(api, "quiet")
    rm = gpu_node(tmp_path, monkeypatch, "t4-whole.yaml", "exclusive")
    labels = run_writer(api, rm, "quiet", gfd="leave")
    assert not gfd(labels) and labels[LABEL_GPU_MODE] == "exclusive"
    assert json.loads(node_meta(api, "quiet")[1][ANNOTATION_OWNED_LABELS]) == {LABEL_GPU_MODE: "exclusive"}

    add_node(api, "switched")
    assert gfd(run_writer(api, rm, "switched")) == gfd(run_writer(api, rm, "switched")) != {}
    labels = run_writer(api, rm, "switched", gfd="leave")   # the admin now runs GFD beside it
    assert gfd(labels), "labels written before stay for GFD to take over, not removed under a selector"
    owned = json.loads(node_meta(api, "switched")[1][ANNOTATION_OWNED_LABELS])
    assert not gfd(owned), "and they are no longer Tessera's: uninstall leaves them"


def test_another_writers_labels_are_never_overwritten_or_removed(api, tmp_path, monkeypatch):
    theirs = {"nvidia.com/gpu.product": "Tesla-T4-SHARED", "nvidia.com/gfd.timestamp": "1765000000"}
    add_node(api, "both", theirs)
    rm = gpu_node(tmp_path, monkeypatch, "t4-whole.yaml", "exclusive")
    labels = run_writer(api, rm, "both")
    assert labels["nvidia.com/gpu.product"] == "Tesla-T4-SHARED" and labels["nvidia.com/gpu.count"] == "4"
    owned = json.loads(node_meta(api, "both")[1][ANNOTATION_OWNED_LABELS])
    assert "nvidia.com/gpu.product" not in owned and "nvidia.com/gpu.count" in owned

    # GFD starts later and writes its own value over one of Tessera's: from then on it is GFD's
    api.registry.patch("nodes", "both", {"metadata": {"labels": {"nvidia.com/gpu.family": "gfd-says"}}})
    # (the plugin restarts: its writer looks at the Node again)
    labels = run_writer(api, rm, "both")
    assert labels["nvidia.com/gpu.family"] == "gfd-says"
    assert "nvidia.com/gpu.family" not in json.loads(node_meta(api, "both")[1][ANNOTATION_OWNED_LABELS])

    assert device_plugin_main(["--remove-labels", f"--kubeconfig={api.kubeconfig}", "--node-name=both"]) == 0
    labels, annotations = node_meta(api, "both")
    assert gfd(labels) == {**theirs, "nvidia.com/gpu.family": "gfd-says"}, "only Tessera's own labels go"
    assert ANNOTATION_OWNED_LABELS not in annotations and LABEL_GPU_MODE not in labels


def test_remove_labels_takes_tesseras_labels_off_every_node(api, tmp_path, monkeypatch):
    rm = gpu_node(tmp_path, monkeypatch, "t4-whole.yaml", "exclusive")
    for name in ("a", "b"):
        add_node(api, name, {"team": "ml"})
        assert gfd(run_writer(api, rm, name))
    add_node(api, "cpu-only", {"team": "web"})
    assert device_plugin_main(["--remove-labels", "--all-nodes", f"--kubeconfig={api.kubeconfig}"]) == 0
    for name, team in (("a", "ml"), ("b", "ml"), ("cpu-only", "web")):
        labels, annotations = node_meta(api, name)
        assert labels == {"team": team} and ANNOTATION_OWNED_LABELS not in annotations


def test_a_node_already_right_gets_an_empty_label_patch():
    desired = {"nvidia.com/gpu.count": "4", "nvidia.com/gpu.product": "Tesla-T4"}
    plan = label_plan(dict(desired), dict(desired), desired)
    assert plan.labels == {} and plan.owned == desired
    changed = label_plan(dict(desired), dict(desired), {**desired, "nvidia.com/gpu.count": "3"})
    assert changed.labels == {"nvidia.com/gpu.count": "3"}
    dropped = label_plan(dict(desired), dict(desired), {"nvidia.com/gpu.product": "Tesla-T4"})
    assert dropped.labels == {"nvidia.com/gpu.count": None}, "a label Tessera no longer decides is removed"


def test_labels_an_earlier_tessera_wrote_before_the_record_are_taken_over_on_upgrade(api, tmp_path, monkeypatch):
    rm = gpu_node(tmp_path, monkeypatch, "t4-whole.yaml", "exclusive")
    earlier = {"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "4", "nvidia.com/gpu.memory": "1"}
    add_node(api, "upgraded", earlier)
    api.registry.patch("nodes", "upgraded", {"metadata": {"annotations": {
        "tessera.io/gpu-inventory": rm.inventory("upgraded").to_json()}}})
    labels = run_writer(api, rm, "upgraded")
    owned = json.loads(node_meta(api, "upgraded")[1][ANNOTATION_OWNED_LABELS])
    assert owned["nvidia.com/gpu.product"] == "Tesla-T4" and owned["nvidia.com/gpu.count"] == "4"
    assert labels["nvidia.com/gpu.memory"] == "1" and "nvidia.com/gpu.memory" not in owned, \
        "a value Tessera would not write is not taken for its own"


def test_the_setting_takes_write_or_leave_and_nothing_else():
    assert DevicePluginConfig().gfd_labels == "write"
    assert parse_config({"version": "v1", "deviceplugin": {"gfd_labels": "leave"}}).deviceplugin.gfd_labels == "leave"
    with pytest.raises(ConfigError, match="gfd_labels"):
        parse_config({"version": "v1", "deviceplugin": {"gfd_labels": "both"}})
