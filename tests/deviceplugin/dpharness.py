"""Test helpers for the device plugin: node directories, plugin processes, the simulated kubelet, pods."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL
from simcluster.plugins import stop_mps_daemon
from simcluster import poll_until
from simcluster.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES = REPO_ROOT / "tessera" / "nodes"


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> object:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    try:
        return poll_until(predicate, timeout, interval, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A node directory: its fake-NVML description, plugin dir, pod-resources socket, key and MPS dirs."""

    def __init__(self, root: Path, description: str) -> None:
        self.root = root
        self.description = root / "nvml.yaml"
        shutil.copy(NODES / description, self.description)
        self.plugin_dir = root / "dp"
        self.plugin_dir.mkdir()
        self.pod_resources = root / "pr.sock"
        self.checkpoint = self.plugin_dir / "kubelet_internal_checkpoint"
        self.grant_key = root / "grant.key"
        self.mps = {k: root / "mps" / k for k in ("pipe", "shm", "log")}
        self.port = free_port()

    @classmethod
    def _at(cls, root: Path) -> "Node":
        node = cls.__new__(cls)
        node.root = root
        node.mps = {k: root / "mps" / k for k in ("pipe", "shm", "log")}
        return node

    def plugin_args(self, **overrides: str) -> list[str]:
        flags = {"device-plugin-path": str(self.plugin_dir), "pod-resources-socket": str(self.pod_resources),
                 "node-name": "gpu-node", "grant-key-path": str(self.grant_key),
                 "assignment-public-key-path": str(self.root / "extender.pub"),
                 "mps-pipe-directory": str(self.mps["pipe"]), "mps-shm-directory": str(self.mps["shm"]),
                 "mps-log-directory": str(self.mps["log"]), "listen": f"127.0.0.1:{self.port}",
                 "log-format": "json", "mps-control-binary": FAKE_MPS_CONTROL, "mps-user": str(os.getuid()),
                 **overrides}
        return [f"--{k}={v}" for k, v in flags.items() if v is not None]


def quit_mps_daemon(node: "Node") -> None:
    """Stop a fake MPS daemon a plugin started for this node (it outlives the plugin, by design)."""
    stop_mps_daemon(node.root / "mps")


@contextlib.contextmanager
def plugin_on_kubelet(description: str, **flags: str):
    """A node directory, a simulated kubelet device manager and a plugin process, as one context."""
    from simcluster.kubelet.devicemanager import DeviceManager

    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="tdp-"))
    node = Node(root, description)
    manager = DeviceManager(str(node.plugin_dir), str(node.checkpoint), pod_resources_socket=str(node.pod_resources))
    manager.start()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TESSERA_FAKE_NVML": str(node.description)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    with open(root / "plugin.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "deviceplugin.main", *node.plugin_args(**flags)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    try:
        yield node, manager, proc
    finally:
        stop_process(proc, 5.0)
        manager.stop()
        quit_mps_daemon(node)
        shutil.rmtree(root, ignore_errors=True)


def pod_manifest(name: str, limits: dict[str, int], node: str | None = None, annotations: dict | None = None) -> dict:
    spec = {"containers": [{"name": "main", "image": "cuda", "resources": {
        "limits": {k: str(v) for k, v in limits.items()}}}]}
    if node:
        spec["nodeName"] = node
    else:
        spec["schedulerName"] = "nobody"  # stays unbound until the test binds it
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}}, "spec": spec}


class PodClient:
    """Plain-dict pod calls against the embedded API server."""

    def __init__(self, cluster) -> None:
        import kubernetes

        self.v1 = cluster.core_v1()
        self.kubernetes = kubernetes

    def create(self, manifest: dict) -> dict:
        import json

        resp = self.v1.create_namespaced_pod("default", manifest, _preload_content=False)
        return json.loads(resp.data)

    def get(self, name: str) -> dict:
        import json

        return json.loads(self.v1.read_namespaced_pod(name, "default", _preload_content=False).data)

    def annotate(self, name: str, annotations: dict) -> None:
        self.v1.patch_namespaced_pod(name, "default", {"metadata": {"annotations": annotations}},
                                     _content_type="application/merge-patch+json", _preload_content=False)

    def bind(self, name: str, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self.v1.create_namespaced_binding("default", body, _preload_content=False)

    def node(self, name: str) -> dict:
        import json

        return json.loads(self.v1.read_node(name, _preload_content=False).data)
