"""The embedded API server as its own process (``python -m simcluster.apiserver.serve``): its light
nodes listed by the real kubernetes client through the kubeconfig it writes, and a clean stop on SIGTERM."""

from __future__ import annotations

import subprocess
import sys

from kubernetes import client, config

from simcluster.apiserver.serve import REPO_ROOT, spawn
from simcluster.cluster import load_cluster


def test_light_nodes_served_from_own_process_and_stopped_by_sigterm(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    proc, url = spawn(["--port", "0", "--light-nodes", "3", "--model", "A100-SXM4-40GB", "--gpus", "8",
                       "--mode", "mps", "--kubeconfig", str(kubeconfig)])
    try:
        assert url.startswith("http://127.0.0.1:")
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        nodes = core.list_node().items
        assert [n.metadata.name for n in nodes] == ["node-00000", "node-00001", "node-00002"]
        for node in nodes:
            assert node.status.allocatable["nvidia.com/mps-core"] == "800"
            assert node.status.allocatable["nvidia.com/mps-memory"] == "320"
            assert node.metadata.labels["tessera.io/gpu-mode"] == "mps"
            assert "tessera.io/gpu-inventory" in node.metadata.annotations
        uuids = {n.metadata.annotations["tessera.io/gpu-inventory"] for n in nodes}
        assert len(uuids) == 3  # each node its own GPU identities
    finally:
        proc.terminate()
    assert proc.wait(10) == 0


def test_cluster_description_served_as_light_nodes():
    proc, url = spawn(["--cluster", str(REPO_ROOT / "simcluster" / "clusters" / "default.yaml")])
    try:
        core = client.CoreV1Api(client.ApiClient(client.Configuration(host=url)))
        names = sorted(n.metadata.name for n in core.list_node().items)
        assert names == sorted(n.name for n in load_cluster().nodes)
    finally:
        proc.terminate()
    assert proc.wait(10) == 0


def test_help_and_refused_arguments():
    run = [sys.executable, "-m", "simcluster.apiserver.serve"]
    shown = subprocess.run([*run, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "--light-nodes" in shown.stdout
    refused = subprocess.run([*run, "--cluster", "x.yaml", "--light-nodes", "2"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "not both" in refused.stderr
