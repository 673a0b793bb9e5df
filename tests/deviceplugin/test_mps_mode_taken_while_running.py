"""A node that started with no MPS GPU and gets one while the plugin runs (the node label, or a config reload)
gets its MPS control daemon supervised from then on: started, and its defaults set to the largest grant, the
hard cap MPS clients cannot pass. Before, the supervisor was made at start only, so such a node advertised
MPS shares that nothing capped."""

from __future__ import annotations

import json

from simcluster.cluster import NodeSpec
from tessera import LABEL_GPU_MODE

CORE = "nvidia.com/mps-core"


def events(cluster, node: str, name: str) -> list[dict]:
    out = []
    for line in (cluster.nodes[node].root / "device-plugin.log").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            out.append(event)
    return out


def test_a_node_labelled_mps_while_running_gets_its_mps_daemon_and_caps(embedded, manifest, eventually):
    cluster, _, pods = embedded(NodeSpec(name="n1", model="A100-SXM4-80GB", gpus=2, mode="exclusive"))
    eventually(lambda: pods.node("n1")["status"].get("allocatable", {}).get("nvidia.com/gpu") == "2", timeout=20,
               what="two whole GPUs")
    assert not events(cluster, "n1", "mps_daemon_started")

    cluster.core_v1().patch_node("n1", {"metadata": {"labels": {LABEL_GPU_MODE: "mps"}}})
    eventually(lambda: pods.node("n1")["status"].get("allocatable", {}).get(CORE) == "200", timeout=20,
               what="both GPUs shared through MPS")
    eventually(lambda: events(cluster, "n1", "mps_daemon_started"), timeout=20, what="the MPS daemon started")

    pods.create(manifest("share", {CORE: 40, "nvidia.com/mps-memory": 10}, node="n1"))
    eventually(lambda: pods.get("share")["status"].get("phase") == "Running", timeout=20, what="the MPS pod running")
    set_commands = eventually(lambda: [c for e in events(cluster, "n1", "mps_defaults_set") for c in e["commands"]
                                       if c == "set_default_active_thread_percentage 40"],
                              timeout=20, what="the daemon's default capped at the pod's grant")
    assert set_commands
