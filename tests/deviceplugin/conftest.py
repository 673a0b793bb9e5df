"""Fixtures: a node directory under /tmp, the simulated kubelet's device manager, plugin processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from simcluster.fakemps import running_daemons
from simcluster.plugins import stop_mps_daemon
from simcluster.processes import stop_process
from dpharness import REPO_ROOT, Node, PodClient, pod_manifest, quit_mps_daemon, wait_until


@pytest.fixture
def mps_root():
    """A folder for one MPS daemon's pipe, log and shm folders; no daemon may be left there at the end."""
    root = Path(os.path.realpath(tempfile.mkdtemp(dir="/tmp", prefix="tmps-")))
    yield root
    stop_mps_daemon(root)
    assert running_daemons(root) == [], "a test left a daemon behind"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_node():
    roots = []

    def make(description: str) -> Node:
        root = Path(tempfile.mkdtemp(dir="/tmp", prefix="tdp-"))
        roots.append(root)
        return Node(root, description)

    yield make
    for root in roots:
        quit_mps_daemon(Node._at(root))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_plugin():
    """Start ``tessera-device-plugin`` processes; each is stopped (SIGTERM, then SIGKILL) at the end."""
    procs: list[subprocess.Popen] = []

    def start(node: Node, **flags: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TESSERA_FAKE_NVML": str(node.description)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = open(node.root / f"plugin-{len(procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "deviceplugin.main", *node.plugin_args(**flags)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc, 5.0)


@pytest.fixture
def kubelet():
    """A simulated kubelet device manager for a Node; started on first call, stopped at the end."""
    from simcluster.kubelet.devicemanager import DeviceManager

    managers = []

    def start(node: Node) -> DeviceManager:
        manager = DeviceManager(str(node.plugin_dir), str(node.checkpoint), pod_resources_socket=str(node.pod_resources))
        manager.start()
        managers.append(manager)
        return manager

    yield start
    for manager in managers:
        manager.stop()


@pytest.fixture
def eventually():
    return wait_until


@pytest.fixture
def manifest():
    return pod_manifest


@pytest.fixture
def embedded():
    """Start an embedded cluster from NodeSpecs, with one plugin process per node."""
    import contextlib

    from simcluster.cluster import ClusterDescription
    from simcluster.plugins import device_plugins
    from simcluster import running

    stack = contextlib.ExitStack()

    def start(*specs, extender_public_key: str | None = None, extra: list[str] | None = None):
        cluster = stack.enter_context(running(ClusterDescription(nodes=tuple(specs)), status_delay_s=0.05))
        plugins = stack.enter_context(device_plugins(cluster, extra=extra, extender_public_key=extender_public_key))
        return cluster, plugins, PodClient(cluster)

    yield start
    stack.close()
