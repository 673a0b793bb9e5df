"""One ``tessera-exporter`` process per node of a running embedded cluster.

Each exporter reads its node's fake NVML, its kubelet's pod-resources socket, and the hook's container
records in the node's Tessera state directory, exactly as the DaemonSet does on a real node.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from exporter.launch import start_exporter, wait_ready
from simcluster.running import Cluster


@dataclass
class NodeExporter:
    node: str
    process: subprocess.Popen
    url: str


def start_exporters(cluster: Cluster, interval_s: float = 1.0) -> dict[str, NodeExporter]:
    """Start an exporter for every node with a kubelet; returns them once each answers /healthz."""
    started: dict[str, NodeExporter] = {}
    try:
        for name, node in cluster.nodes.items():
            if node.kubelet is None:
                continue
            node.paths.tessera_state.mkdir(parents=True, exist_ok=True)
            proc = start_exporter(str(node.nvml_description), str(node.paths.pod_resources_socket),
                                  str(node.paths.tessera_state), interval_s=interval_s, node_name=name,
                                  kubeconfig=str(cluster.kubeconfig), log_path=str(node.root / "exporter.log"))
            started[name] = NodeExporter(name, proc, "")
        for exporter in started.values():
            exporter.url = wait_ready(exporter.process)
    except BaseException:
        stop_exporters(started)
        raise
    return started


def stop_exporters(exporters: dict[str, NodeExporter]) -> None:
    """Stop every exporter (SIGTERM, then SIGKILL after 5 s)."""
    for exporter in exporters.values():
        if exporter.process.poll() is None:
            exporter.process.terminate()
    for exporter in exporters.values():
        try:
            exporter.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            exporter.process.kill()
            exporter.process.wait()
