"""Fixtures for the exporter's tests: fake nodes, exporter processes, a recording API, Prometheus."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from simcluster.exporter_launch import start_exporter, wait_ready
from fakenode import FakeNode, RecordingApi

from simcluster.prometheus import Prometheus, prometheus_missing
from simcluster.processes import stop_process
from simcluster.kubelet.podresources import PodResourcesServer


@pytest.fixture
def fake_node() -> Callable[[str], FakeNode]:
    roots: list[Path] = []
    servers: list[PodResourcesServer] = []

    def make(description: str = "h100-80gb-mps.yaml", serve: bool = True) -> FakeNode:
        root = Path(tempfile.mkdtemp(dir="/tmp", prefix="tx-"))
        roots.append(root)
        node = FakeNode(root, description)
        if serve:
            node.pod_resources.start()
            servers.append(node.pod_resources)
        return node

    yield make
    for server in servers:
        server.stop()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)



@pytest.fixture
def run_exporter():
    """Start exporter processes; each is terminated at the end of the test."""
    procs = []

    def start(node: FakeNode, *, interval_s: float = 0.3, kubeconfig: str = "", args: list[str] = (),
              log_name: str = "exporter.log") -> str:
        proc = start_exporter(node.description_path, node.socket, node.state_dir, "127.0.0.1:0",
                              interval_s=interval_s, kubeconfig=kubeconfig, proc_root=str(node.proc_root),
                              overuse_dir=node.overuse_dir, log_path=str(node.root / log_name), extra_args=list(args))
        procs.append(proc)
        return wait_ready(proc)

    yield start
    for proc in procs:
        stop_process(proc, 5.0)


@pytest.fixture
def recording_api():
    api = RecordingApi()
    yield api
    api.close()


@pytest.fixture
def prometheus():
    if why := prometheus_missing():
        pytest.skip(why)
    started: list[Prometheus] = []
    roots: list[str] = []

    def start(targets: list[str], jobs: dict[str, list[str]] | None = None) -> Prometheus:
        """Prometheus scraping ``targets`` as job tessera-exporter, and any more ``jobs``."""
        root = tempfile.mkdtemp(dir="/tmp", prefix="tprom-")
        roots.append(root)
        started.append(Prometheus(Path(root), {"tessera-exporter": targets, **(jobs or {})}))
        return started[-1]

    yield start
    for p in started:
        p.stop()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
