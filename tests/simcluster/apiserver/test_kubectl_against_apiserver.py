"""kubectl, unmodified, reads and writes the embedded cluster (no --validate=false needed)."""

from __future__ import annotations

import json
import shutil

import pytest

from apiserver_helpers import kubectl as run_kubectl, node, pod

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")


@pytest.fixture
def kubectl(server, tmp_path):
    def run(*args: str) -> str:
        out = run_kubectl(server, tmp_path, *args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


@pytest.fixture
def scheduled_pod(server):
    reg = server.registry
    reg.create("nodes", node("gpu-node-1", {"node-role.kubernetes.io/worker": ""}))
    p = reg.create("pods", pod("web", nodeName="gpu-node-1"))
    reg.create("events", {
        "metadata": {"name": "web.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": p["metadata"]["uid"],
                           "apiVersion": "v1"},
        "reason": "Scheduled", "message": "Successfully assigned default/web to gpu-node-1", "type": "Normal",
        "source": {"component": "tessera-extender"}, "count": 1,
        "firstTimestamp": p["metadata"]["creationTimestamp"], "lastTimestamp": p["metadata"]["creationTimestamp"],
    })
    reg.create("events", {  # another pod's event must not show up
        "metadata": {"name": "other.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "other", "uid": "x"},
        "reason": "Failed", "message": "not about web", "type": "Warning",
    })
    return p


def test_get_nodes_table(kubectl, scheduled_pod):
    lines = kubectl("get", "nodes").splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert lines[1].split()[:3] == ["gpu-node-1", "Ready", "worker"] and lines[1].split()[-1] == "v1.32.0"


def test_get_pods_wide_table(kubectl, scheduled_pod):
    lines = kubectl("get", "pods", "-o", "wide").splitlines()
    assert lines[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    cells = lines[1].split()
    assert cells[:4] == ["web", "0/1", "Pending", "0"] and cells[6] == "gpu-node-1"


def test_get_as_json(kubectl, scheduled_pod):
    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json"))
    assert [p["metadata"]["name"] for p in pods["items"]] == ["web"]
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))
    assert nodes["items"][0]["metadata"]["name"] == "gpu-node-1"


def test_describe_pod_shows_its_events_only(kubectl, scheduled_pod):
    out = kubectl("describe", "pod", "web")
    assert "Node:         gpu-node-1" in out
    events = out.split("Events:", 1)[1]
    assert "Successfully assigned default/web to gpu-node-1" in events
    assert "not about web" not in events


def test_annotate_and_label(kubectl, scheduled_pod, server):
    assert "annotated" in kubectl("annotate", "pod", "web", "tessera.io/note=hello")
    assert "labeled" in kubectl("label", "node", "gpu-node-1", "tessera.io/gpu-mode=mps")
    assert server.registry.get("pods", "web", "default")["metadata"]["annotations"] == {"tessera.io/note": "hello"}
    assert server.registry.get("nodes", "gpu-node-1")["metadata"]["labels"]["tessera.io/gpu-mode"] == "mps"
    kubectl("label", "node", "gpu-node-1", "tessera.io/gpu-mode-")
    assert "tessera.io/gpu-mode" not in server.registry.get("nodes", "gpu-node-1")["metadata"]["labels"]


def test_delete_shows_terminating(kubectl, scheduled_pod):
    kubectl("delete", "pod", "web", "--wait=false")
    assert kubectl("get", "pods").splitlines()[1].split()[2] == "Terminating"
