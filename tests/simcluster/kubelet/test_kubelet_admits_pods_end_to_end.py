"""The simulated kubelet end to end: a device plugin in its own process, the API server, real sockets.

The Node's capacity follows the plugin's ListAndWatch (after the status delay), a pod bound to the
node is admitted through GetPreferredAllocation and Allocate, its config.json carries the response
in the runtime's flavour, a refused allocation fails the pod for good, and a kubelet restart drops
capacity to 0 until the plugin registers again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import kubernetes
import pytest

from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.kubelet.simkubelet import SimKubelet

RESOURCE = "example.com/gpu"


def core(api: ApiServer) -> kubernetes.client.CoreV1Api:
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


def node_resource(v1, field: str) -> int:
    node = v1.read_node("gpu-node")
    return int((getattr(node.status, field) or {}).get(RESOURCE, "0"))


def pod_asking(name: str, count: int, env_value: str = "from-the-pod") -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {"tessera.io/fake-grant": "written-by-the-user"}},
        "spec": {"nodeName": "gpu-node", "containers": [{
            "name": "main", "image": "busybox",
            "env": [{"name": "FAKE_VISIBLE_DEVICES", "value": env_value}],
            "resources": {"limits": {RESOURCE: str(count)}}}]},
    }


@pytest.mark.parametrize("flavour", ["containerd", "crio"])
def test_plugin_capacity_admission_and_config_json(api, node_dir, start_plugin, eventually, flavour):
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=3), api.url, Path(node_dir),
                         runtime=flavour, status_delay_s=0.1, seed=1)
    kubelet.start()
    try:
        v1 = core(api)
        control = Path(node_dir) / "control.json"
        start_plugin("GPU-0@0,GPU-1@0,GPU-2@1", "--preferred", "GPU-2,GPU-0", "--control", str(control))
        eventually(lambda: node_resource(v1, "capacity") == 3, what="capacity 3 on the Node")
        assert node_resource(v1, "allocatable") == 3

        v1.create_namespaced_pod("default", pod_asking("two-gpus", 2))
        pod = eventually(lambda: (p := v1.read_namespaced_pod("two-gpus", "default")).status.phase == "Running"
                         and p, what="pod Running")
        bundle = kubelet.bundle_path(pod.metadata.uid, "main")
        config = json.loads((bundle / "config.json").read_text())
        env = config["process"]["env"]
        annotations = config["annotations"]
        granted = annotations["tessera.io/fake-grant"]
        assert sorted(granted.split(",")) == ["GPU-0", "GPU-2"], "the plugin's preferred devices were not allocated"
        if flavour == "containerd":
            # Both copies kept, the plugin's first; the plugin's tessera.io/ annotation wins over the pod's.
            copies = [e for e in env if e.startswith("FAKE_VISIBLE_DEVICES=")]
            assert copies == [f"FAKE_VISIBLE_DEVICES={granted}", "FAKE_VISIBLE_DEVICES=from-the-pod"]
            assert annotations["io.kubernetes.cri.sandbox-uid"] == pod.metadata.uid
            assert "other.io/note" not in annotations
        else:
            # One copy, the pod's value winning: why the hook must compare the environment with the grant.
            copies = [e for e in env if e.startswith("FAKE_VISIBLE_DEVICES=")]
            assert copies == ["FAKE_VISIBLE_DEVICES=from-the-pod"]
            assert annotations["io.kubernetes.pod.uid"] == pod.metadata.uid
            assert annotations["other.io/note"] == "dropped by containerd"
        assert any(m["destination"] == "/usr/local/fake" for m in config["mounts"])

        # One device left: a pod asking for two fails for good, with the kubelet's wording.
        v1.create_namespaced_pod("default", pod_asking("too-many", 2))
        failed = eventually(lambda: (p := v1.read_namespaced_pod("too-many", "default")).status.phase == "Failed"
                            and p, what="pod Failed")
        assert failed.status.reason == "UnexpectedAdmissionError"
        assert failed.status.message.startswith("Allocate failed due to")
        eventually(lambda: any(e.reason == "UnexpectedAdmissionError" for e in v1.list_namespaced_event(
            "default", field_selector="involvedObject.name=too-many").items), what="the kubelet's Warning event")

        # A device turns unhealthy: allocatable drops, capacity stays.
        control.write_text(json.dumps({"unhealthy": ["GPU-1"]}))
        eventually(lambda: node_resource(v1, "allocatable") == 2, what="allocatable 2")
        assert node_resource(v1, "capacity") == 3
    finally:
        kubelet.stop()


def test_kubelet_restart_drops_capacity_until_the_plugin_registers_again(api, node_dir, start_plugin, eventually):
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=3), api.url, Path(node_dir),
                         status_delay_s=0.05)
    kubelet.start()
    try:
        v1 = core(api)
        start_plugin("GPU-0,GPU-1,GPU-2")
        eventually(lambda: node_resource(v1, "capacity") == 3, what="capacity 3")
        seen: list[int] = []
        version = v1.read_node("gpu-node").metadata.resource_version

        def watch_capacity():
            for event in kubernetes.watch.Watch().stream(v1.list_node, resource_version=version, timeout_seconds=5):
                seen.append(int((event["object"].status.capacity or {}).get(RESOURCE, "0")))
                if seen[-1] == 3 and 0 in seen:
                    return

        watcher = threading.Thread(target=watch_capacity)
        watcher.start()
        socket = Path(node_dir) / "device-plugins" / "kubelet.sock"
        before = os.stat(socket)
        began = time.monotonic()
        kubelet.restart()
        after = os.stat(socket)  # inode numbers are reused at once: compare the change time too
        assert (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns), "kubelet.sock not recreated"
        watcher.join(timeout=6)
        assert 0 in seen, f"the Node never showed capacity 0 after the restart: {seen}"
        assert seen[-1] == 3, f"capacity did not come back after the plugin re-registered: {seen}"
        assert time.monotonic() - began < 2.5
    finally:
        kubelet.stop()


def test_pod_asked_to_run_for_a_while_succeeds_and_frees_its_devices(api, node_dir, start_plugin, eventually):
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=3), api.url, Path(node_dir), status_delay_s=0.05)
    kubelet.start()
    try:
        v1 = core(api)
        start_plugin("GPU-0,GPU-1,GPU-2")
        eventually(lambda: node_resource(v1, "capacity") == 3, what="capacity 3")
        short = pod_asking("short-job", 3)
        short["metadata"]["annotations"]["simcluster.tessera.io/run-seconds"] = "0.3"
        short["spec"]["restartPolicy"] = "Never"   # a job: under Always the kubelet would restart it
        v1.create_namespaced_pod("default", short)
        eventually(lambda: v1.read_namespaced_pod("short-job", "default").status.phase == "Succeeded",
                   what="the pod to succeed after its run time")
        # Its three devices are free again: a second pod asking for all three is admitted.
        v1.create_namespaced_pod("default", pod_asking("next-job", 3))
        eventually(lambda: v1.read_namespaced_pod("next-job", "default").status.phase == "Running",
                   what="the next pod to get the freed devices")
    finally:
        kubelet.stop()
