"""The embedded cluster as one context manager, opened as ``with simcluster.running() as cluster: ...``.

It starts the API server, and for each node of the description a node directory (device-plugin
directory, pod-resources socket, container bundles), a fake-NVML node description for the node's
device plugin, and a simulated kubelet. Everything it started is stopped on exit.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from simcluster.apiserver import ApiServer
from simcluster.cluster import ClusterDescription, NodeSpec, load_cluster
from simcluster.fakenodes import make_device_nodes, write_node_description
from simcluster.lightnodes import add_light_nodes
from simcluster.kubelet.simkubelet import KubeletPaths, SimKubelet
from tessera.log import get_logger


@dataclass
class SimNode:
    """One node of the embedded cluster: its description, its directory, its kubelet."""

    spec: NodeSpec
    root: Path
    nvml_description: Path
    kubelet: SimKubelet | None = None

    @property
    def paths(self) -> KubeletPaths:
        """The node's device-plugin directory, pod-resources socket and container bundles."""
        return KubeletPaths(self.root)


@dataclass
class Cluster:
    """A running embedded cluster."""

    api: ApiServer
    workdir: Path
    kubeconfig: Path
    nodes: dict[str, SimNode] = field(default_factory=dict)
    service_account_kubeconfigs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (namespace, name) ->

    @property
    def url(self) -> str:
        return self.api.url

    def core_v1(self) -> kubernetes.client.CoreV1Api:
        """A real ``kubernetes`` client for this cluster."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.api.url
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount ``namespace/name`` (its bearer token), as a
        pod running under it would: the API server and its webhooks see ``system:serviceaccount:<namespace>:<name>``.
        Written once per account; later calls return the same file."""
        path = self.service_account_kubeconfigs.get((namespace, name))
        if path is None:
            path = self.api.write_kubeconfig(self.workdir / f"{namespace}.{name}.kubeconfig",
                                             token=self.api.service_account_token(namespace, name))
            self.service_account_kubeconfigs[(namespace, name)] = path
        return path

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05,
                 what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
        return poll_until(predicate, timeout_s, interval_s, what)


def poll_until(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.1f}s waiting for {what}")
        time.sleep(interval_s)


def make_node_directory(root: Path, spec: NodeSpec) -> SimNode:
    """A simulated node's directory under ``root/nodes``: its fake-NVML description and GPU device nodes."""
    node_root = root / "nodes" / spec.name
    node_root.mkdir(parents=True, exist_ok=True)
    node = SimNode(spec=spec, root=node_root, nvml_description=write_node_description(spec, node_root / "nvml.yaml"))
    make_device_nodes(node_root, node.nvml_description)
    return node


def stop_kubelets(nodes: dict[str, SimNode]) -> None:
    """Stop every node's kubelet (its pods' containers and device manager with it)."""
    for node in nodes.values():
        if node.kubelet:
            node.kubelet.stop()


@contextmanager
def running(description: ClusterDescription | str | Path | None = None, *, workdir: str | Path | None = None,
            runtime: str = "containerd", status_delay_s: float = 0.2, kubelets: bool = True,
            port: int = 0, seed: int | None = None, oci_runtime: str | None = None,
            light: bool = False, keep_workdir_on_error: bool = False,
            restart_backoff_s: tuple[float, float] = (10.0, 300.0)) -> Iterator[Cluster]:
    """Start the embedded cluster; stop everything it started on exit.

    ``description`` is a ClusterDescription, a path to one, or ``None`` for the shipped default.
    ``workdir`` keeps node directories and the kubeconfig (default: a new temp dir, removed on exit).
    ``oci_runtime`` (``runc`` or ``crun``) runs pods' containers for real, with tessera-hook.
    ``light`` makes every node a light node (``simcluster.lightnodes``): its Node object with inventory and
    capacity, no kubelet, no node directory; for placement at the scale of the trace's 1,213 nodes.
    ``keep_workdir_on_error`` keeps a temporary workdir (every daemon's log) when the body raised.
    ``restart_backoff_s`` is the kubelets' container restart back-off (first delay, cap): 10 s and 5 min,
    as the real kubelet's.
    """
    log = get_logger("simcluster")
    if not isinstance(description, ClusterDescription):
        description = load_cluster(description)
    own_workdir = workdir is None
    # Unix socket paths are limited to 107 bytes: keep the root short.
    root = Path(tempfile.mkdtemp(prefix="tessera-", dir="/tmp")) if own_workdir else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    api = ApiServer(host="127.0.0.1", port=port)
    api.start()
    cluster = Cluster(api=api, workdir=root, kubeconfig=root / "kubeconfig")
    failed = False
    try:
        api.write_kubeconfig(str(cluster.kubeconfig))
        if light:
            add_light_nodes(api.registry, description)
            log.info("cluster_started", url=api.url, light_nodes=len(description.nodes), workdir=str(root))
            yield cluster
            return
        for index, spec in enumerate(description.nodes):
            node = make_node_directory(root, spec)
            node_root = node.root
            if kubelets:
                node.kubelet = SimKubelet(spec, api.url, node_root, runtime=runtime, status_delay_s=status_delay_s,
                                          seed=None if seed is None else seed + index, oci_runtime=oci_runtime,
                                          restart_backoff_s=restart_backoff_s, nvml_description=node.nvml_description)
                node.kubelet.start()
            cluster.nodes[spec.name] = node
        log.info("cluster_started", url=api.url, nodes=len(cluster.nodes), workdir=str(root))
        yield cluster
    except Exception:
        failed = True
        raise
    finally:
        stop_kubelets(cluster.nodes)
        api.stop()
        if own_workdir and not (failed and keep_workdir_on_error):
            shutil.rmtree(root, ignore_errors=True)
        log.info("cluster_stopped")
