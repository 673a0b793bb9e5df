"""The node config edited while the real node runs, as an admin edits the ConfigMap: the device plugin and
the DRA driver follow their shared file without being restarted by anyone.

Handing a GPU from the DRA driver to the device plugin (``draplugin.gpus``) is read at start only, so both
daemons restart in place (same process) and the real kubelet sees the GPU move from the ResourceSlice to
``nvidia.com/gpu``; a time-slicing replicas change is applied live, without a restart. The file is put
back at the end and the node returns to what the rest of the tier expects.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import kubernetes
import yaml

from gpunode import ALLOCATABLE, DRA_GPUS, NODE
from realcluster.draside import DRIVER
from realcluster.nodeside import log_events
from realtier import wait_for

MOVED = DRA_GPUS[0]   # whole (exclusive) in the driver's config; the device plugin's default mode is exclusive


def write_atomically(path: Path, text: str) -> None:
    """As the kubelet updates a mounted ConfigMap: a reader sees the old text or the new, never half."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    os.replace(tmp, path)


def allocatable(cluster) -> dict[str, str]:
    node = cluster.core_v1().read_node(NODE)
    return {k: v for k, v in (node.status.allocatable or {}).items() if k.startswith("nvidia.com/")}


def published(cluster) -> set[str]:
    objects = kubernetes.client.CustomObjectsApi(cluster.client())
    slices = objects.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices",
                                                field_selector=f"spec.nodeName={NODE},spec.driver={DRIVER}")
    return {d["name"] for s in slices["items"] for d in s["spec"].get("devices", [])}


class Log:
    """A daemon's log from the test's start on (the file holds the whole session's)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, path.stat().st_size

    def events(self, name: str) -> list[dict]:
        return [e for e in log_events(self.path, self.offset) if e.get("event") == name]


def test_an_edit_moves_a_gpu_between_the_daemons_and_replicas_change_live(dra_node, real_cluster):
    side = dra_node.side
    plugin_log, driver_log = Log(side.plugin.log_path), Log(dra_node.plugin.log_path)
    plugin_pid, driver_pid = side.plugin.proc.pid, dra_node.plugin.proc.pid
    original = side.config.read_text()
    assert f"gpu-{MOVED}" in published(real_cluster) and allocatable(real_cluster)["nvidia.com/gpu"] == "2"
    edited = copy.deepcopy(yaml.safe_load(original))
    edited["draplugin"]["gpus"] = [g for g in DRA_GPUS if g != MOVED]
    try:
        write_atomically(side.config, yaml.safe_dump(edited))
        wait_for(lambda: allocatable(real_cluster).get("nvidia.com/gpu") == "3"
                 and f"gpu-{MOVED}" not in published(real_cluster),
                 f"GPU {MOVED} moved from the ResourceSlice to nvidia.com/gpu", timeout_s=180)
        assert [e["start_only"] for e in plugin_log.events("node_config_restart")] == [["draplugin.gpus"]]
        assert [e["start_only"] for e in driver_log.events("node_config_restart")] == [["draplugin.gpus"]]
        assert plugin_log.events("device_plugin_restarting") and driver_log.events("dra_plugin_restarting")
        assert (side.plugin.proc.pid, dra_node.plugin.proc.pid) == (plugin_pid, driver_pid)
        assert side.plugin.proc.poll() is None and dra_node.plugin.proc.poll() is None

        # live: the device plugin's time-sliced GPU shared 6 ways instead of 4, no restart
        edited["deviceplugin"]["timeslice_replicas"] = 6
        write_atomically(side.config, yaml.safe_dump(edited))
        wait_for(lambda: allocatable(real_cluster).get("nvidia.com/gpu.shared") == "6",
                 "six replicas of the time-sliced GPU", timeout_s=120)
        assert len(plugin_log.events("node_config_restart")) == 1
        assert plugin_log.events("node_config_applied")[-1]["keys"] == ["deviceplugin.timeslice_replicas"]
        # the driver reads the file too: nothing of its own changed, so it only notes it
        wait_for(lambda: driver_log.events("node_config_same_settings"), "the driver noting the new file")
        assert len(driver_log.events("node_config_restart")) == 1
    finally:
        write_atomically(side.config, original)
        wait_for(lambda: {k: v for k, v in allocatable(real_cluster).items() if k in ALLOCATABLE} == ALLOCATABLE
                 and f"gpu-{MOVED}" in published(real_cluster),
                 "the node back on its first config", timeout_s=180)
        dra_node.wait_ready("after the config was put back")
