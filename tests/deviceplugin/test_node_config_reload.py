"""The node config as an admin hands it over: a ConfigMap mounted as a folder, edited while the plugin runs,
and per-node configs chosen by the label ``tessera.io/node-config``.

The plugin runs as a process on the embedded cluster beside the simulated kubelet; the folder is written
as the kubelet writes a mounted ConfigMap (``..data`` swaps). What an admin checks: the Node's allocatable
changes to what the new config says, without the plugin restarting for modes and replicas; a bad edit
is refused and the node keeps serving; a key read at start only restarts the plugin in place.
"""

from __future__ import annotations

import json
from pathlib import Path

from simcluster.cluster import NodeSpec
from simcluster.volumes import project_texts
from tessera.config.nodeconfig import NODE_CONFIG_LABEL

GPU, SHARED = "nvidia.com/gpu", "nvidia.com/gpu.shared"
TIMESLICE_ONE = "version: v1\ndeviceplugin:\n  gpu_modes: {1: timeslice}\n  timeslice_replicas: 3\n"


def allocatable(pods, node: str) -> dict[str, int]:
    status = pods.node(node).get("status") or {}
    return {k: int(v) for k, v in (status.get("allocatable") or {}).items() if k in (GPU, SHARED) and int(v)}


def events(cluster, node: str) -> list[dict]:
    """The plugin's JSON log lines, in order."""
    out = []
    for line in (cluster.nodes[node].root / "device-plugin.log").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def named(cluster, node: str, event: str) -> list[dict]:
    return [e for e in events(cluster, node) if e.get("event") == event]


def label_node(cluster, node: str, value: str | None) -> None:
    cluster.core_v1().patch_node(node, {"metadata": {"labels": {NODE_CONFIG_LABEL: value}}})


def start(embedded, volume: Path, *texts: tuple[str, dict[str, str]]):
    project_texts(volume, "v0", dict(texts[0][1]) if texts else {"config.yaml": "version: v1\n"})
    return embedded(NodeSpec(name="n1", model="A100-SXM4-80GB", gpus=2, mode="exclusive"),
                    extra=[f"--config={volume / 'config.yaml'}", "--node-config-check-s=0.5",
                           "--node-config-restart-after-s=0"])


def test_an_edit_changes_modes_live_and_a_label_picks_a_named_config(embedded, eventually, tmp_path):
    volume = tmp_path / "node-config"
    cluster, plugins, pods = start(embedded, volume, ("v0", {"config.yaml": "version: v1\n",
                                                             "timeslice.yaml": TIMESLICE_ONE}))
    pid = plugins.procs["n1"].pid
    eventually(lambda: allocatable(pods, "n1") == {GPU: 2}, timeout=20, what="two whole GPUs advertised")

    # the admin edits the ConfigMap: GPU 0 time-sliced, replicas by default (4)
    project_texts(volume, "v1", {"config.yaml": "version: v1\ndeviceplugin:\n  gpu_modes: {0: timeslice}\n",
                                 "timeslice.yaml": TIMESLICE_ONE})
    eventually(lambda: allocatable(pods, "n1") == {GPU: 1, SHARED: 4}, timeout=20, what="GPU 0 time-sliced")
    assert named(cluster, "n1", "node_config_applied") and not named(cluster, "n1", "device_plugin_restarting")

    # one node labelled for the named config: GPU 1 time-sliced three ways, GPU 0 whole again
    label_node(cluster, "n1", "timeslice")
    eventually(lambda: allocatable(pods, "n1") == {GPU: 1, SHARED: 3}, timeout=20, what="the named config applied")

    # a bad edit of that config is refused; the node keeps serving what it served
    project_texts(volume, "v2", {"config.yaml": "version: v1\ndeviceplugin:\n  gpu_modes: {0: timeslice}\n",
                                 "timeslice.yaml": TIMESLICE_ONE.replace("3", "0")})
    refused = eventually(lambda: named(cluster, "n1", "node_config_refused"), timeout=20, what="the bad edit refused")
    assert "timeslice_replicas" in refused[-1]["reason"] and refused[-1]["kept"] == "timeslice"
    assert allocatable(pods, "n1") == {GPU: 1, SHARED: 3}

    # a label naming no config: the default one, and the log says which names there are
    label_node(cluster, "n1", "typo")
    eventually(lambda: allocatable(pods, "n1") == {GPU: 1, SHARED: 4}, timeout=20, what="back on config.yaml")
    missing = named(cluster, "n1", "node_config_not_found")[-1]["reason"]
    assert "typo.yaml" in missing and "timeslice" in missing and "default" in missing
    assert plugins.procs["n1"].poll() is None and plugins.procs["n1"].pid == pid
    assert not named(cluster, "n1", "device_plugin_restarting")


def test_a_key_read_at_start_only_restarts_the_plugin_in_place(embedded, eventually, tmp_path):
    volume = tmp_path / "node-config"
    cluster, plugins, pods = start(embedded, volume)
    eventually(lambda: allocatable(pods, "n1") == {GPU: 2}, timeout=20, what="two whole GPUs advertised")
    assert len(named(cluster, "n1", "device_plugin_started")) == 1

    # the DRA driver takes GPU 1: the plugin must stop serving it, which it decides at start only
    project_texts(volume, "v1", {"config.yaml": "version: v1\ndraplugin:\n  gpus: [1]\n"})
    eventually(lambda: len(named(cluster, "n1", "device_plugin_started")) == 2, timeout=30,
               what="the plugin started again")
    restart = named(cluster, "n1", "node_config_restart")[-1]
    assert restart["start_only"] == ["draplugin.gpus"]
    eventually(lambda: allocatable(pods, "n1") == {GPU: 1}, timeout=20, what="GPU 1 left to the DRA driver")
    assert plugins.procs["n1"].poll() is None, "restarted in place, not exited"

    # started again, it reads the same file: no second restart
    started = named(cluster, "n1", "device_plugin_started")
    assert len(started) == 2 and started[-1]["resources"]
    assert len(named(cluster, "n1", "node_config_restart")) == 1


def test_a_node_labelled_before_start_starts_on_its_config(embedded, eventually, tmp_path):
    volume = tmp_path / "node-config"
    project_texts(volume, "v0", {"config.yaml": "version: v1\n", "timeslice.yaml": TIMESLICE_ONE})
    from simcluster import running
    from simcluster.cluster import ClusterDescription
    from simcluster.plugins import device_plugins
    from dpharness import PodClient

    spec = NodeSpec(name="n1", model="A100-SXM4-80GB", gpus=2, mode="exclusive")
    with running(ClusterDescription(nodes=(spec,)), status_delay_s=0.05) as cluster:
        label_node(cluster, "n1", "timeslice")
        with device_plugins(cluster, extra=[f"--config={volume / 'config.yaml'}"]):
            pods = PodClient(cluster)
            eventually(lambda: allocatable(pods, "n1") == {GPU: 1, SHARED: 3}, timeout=20,
                       what="the labelled node's config from the start")
            assert not named(cluster, "n1", "node_config_changed")


def test_a_restart_waits_while_it_would_change_gpus_under_running_pods(embedded, manifest, eventually, tmp_path):
    """A fresh start applies modes at once, so an edit that needs a restart and changes the mode of GPUs that
    pods hold waits until they drain (node_config_restart_waiting), then restarts and takes the modes."""
    volume = tmp_path / "node-config"
    cluster, plugins, pods = start(embedded, volume)
    eventually(lambda: allocatable(pods, "n1") == {GPU: 2}, timeout=20, what="two whole GPUs advertised")
    for name in ("a", "b"):
        pods.create(manifest(name, {GPU: 1}, node="n1"))
    eventually(lambda: all(pods.get(n)["status"].get("phase") == "Running" for n in ("a", "b")), timeout=20,
               what="both GPUs held")

    project_texts(volume, "v1", {"config.yaml": "version: v1\ndeviceplugin:\n  default_mode: exclusive\n"
                                                "  gpu_modes: {0: timeslice, 1: timeslice}\n  fatal_xids: [48]\n"})
    waiting = eventually(lambda: named(cluster, "n1", "node_config_restart_waiting"), timeout=20,
                         what="the restart waiting for the GPUs to drain")
    assert any("holds grants and would change from exclusive to timeslice" in w for w in waiting[-1]["waiting_for"])
    assert not named(cluster, "n1", "node_config_restart") and allocatable(pods, "n1") == {GPU: 2}

    for name in ("a", "b"):
        cluster.core_v1().delete_namespaced_pod(name, "default", grace_period_seconds=0)
    eventually(lambda: allocatable(pods, "n1") == {SHARED: 8}, timeout=60,
               what="drained: restarted in place with both GPUs time-sliced")
    assert len(named(cluster, "n1", "node_config_restart")) == 1
    assert len(named(cluster, "n1", "device_plugin_started")) == 2
