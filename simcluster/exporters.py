"""One ``tessera-exporter`` process per node of a running embedded cluster.

Each exporter reads its node's fake NVML, its kubelet's pod-resources socket, and the hook's container
records in the node's Tessera state directory, exactly as the DaemonSet does on a real node.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simcluster.exporter_launch import start_exporter
from simcluster.readiness import Awaited, http_ok, wait_ready
from simcluster.embedded import Cluster


@dataclass
class NodeExporter:
    node: str
    process: subprocess.Popen
    url: str
    log: Path | None = None

    def awaited(self, ready: Callable[[], object], phase: Callable[[], object] | None = None,
                task: str = "") -> Awaited:
        """Something this exporter is to do, as a wait sees it: its process and its log."""
        return Awaited(f"the exporter of node {self.node}", ready, self.process, self.log, phase, task)


def start_exporters(cluster: Cluster, interval_s: float = 1.0,
                    report: Callable[[str], None] | None = None,
                    kubeconfig: str | Path | None = None) -> dict[str, NodeExporter]:
    """Start an exporter for every node with a kubelet; returns them once each answers /healthz, waiting
    while each lives and progresses (``report`` hears what is still awaited). ``kubeconfig``: the
    identity they use (default the cluster's own kubeconfig; a real cluster's tests give deploy/'s
    ServiceAccount, so that the real authorizer decides)."""
    started: dict[str, NodeExporter] = {}
    try:
        for name, node in cluster.nodes.items():
            if node.kubelet is None:
                continue
            node.paths.tessera_state.mkdir(parents=True, exist_ok=True)
            log = node.root / "exporter.log"
            proc = start_exporter(str(node.nvml_description), str(node.paths.pod_resources_socket),
                                  str(node.paths.tessera_state), interval_s=interval_s, node_name=name,
                                  kubeconfig=str(kubeconfig or cluster.kubeconfig), log_path=str(log))
            started[name] = NodeExporter(name, proc, f"http://{proc.listen}", log)  # type: ignore[attr-defined]
        wait_ready([e.awaited(lambda url=e.url: http_ok(f"{url}/healthz")) for e in started.values()],
                   "answering /healthz", report=report)
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
