"""Fixtures for the simulated kubelet: a short-pathed node directory and device-plugin processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from simcluster.apiserver import ApiServer
from simcluster import poll_until

REPO_ROOT = Path(__file__).resolve().parents[3]
FAKE_PLUGIN = Path(__file__).with_name("fake_device_plugin.py")
RESOURCE = "example.com/gpu"


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    try:
        return poll_until(predicate, timeout, 0.02, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def api():
    """The embedded API server on a free port."""
    server = ApiServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def eventually():
    return wait_until


@pytest.fixture
def node_dir():
    """A node's kubelet root under /tmp: unix socket paths must stay under 108 bytes."""
    root = tempfile.mkdtemp(dir="/tmp", prefix="tsk-")
    os.makedirs(os.path.join(root, "device-plugins"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_plugin(node_dir):
    """Start fake_device_plugin.py processes against the node's plugin directory; all killed at the end."""
    processes: list[subprocess.Popen] = []

    def start(devices: str = "GPU-0@0,GPU-1@0,GPU-2@1", *extra: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.Popen(
            [sys.executable, str(FAKE_PLUGIN), "--plugin-dir", os.path.join(node_dir, "device-plugins"),
             "--resource", RESOURCE, "--devices", devices, *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        processes.append(proc)
        return proc

    yield start
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()
