"""Device plugins for the embedded cluster: one ``tessera-device-plugin`` process per simulated node.

    with simcluster.running.running(desc) as cluster, device_plugins(cluster) as plugins:
        ...

Each process runs on its node's fake NVML (``TESSERA_FAKE_NVML``), with that node's plugin
directory, pod-resources socket, kubeconfig, node name, grant key (the one the node's hook reads),
and MPS directories under the node root, the fake MPS control program standing in for NVIDIA's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deviceplugin.fakemps import CONTROL as FAKE_MPS_CONTROL
from simcluster.readiness import Awaited

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PluginProcesses:
    """The running plugin processes, by node name."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    args: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        """Signal one node's plugin and wait for it to end."""
        proc = self.procs[node]
        proc.send_signal(sig)
        proc.wait(timeout=10)

    def awaited(self, node: str, ready: Callable[[], object], phase: Callable[[], object] | None = None,
                task: str = "") -> Awaited:
        """Something one node's plugin is to do (or take part in), as a wait sees it: its process and its log."""
        return Awaited(f"the device plugin of node {node}", ready, self.procs[node], self.args[node][2], phase, task)

    def restart(self, node: str) -> subprocess.Popen:
        """Start one node's plugin again with the same flags (after :meth:`kill`)."""
        argv, env, log = self.args[node]
        with open(log, "a") as out:
            self.procs[node] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
        return self.procs[node]


def plugin_command(cluster, name: str, extra: list[str] | None = None,
                   extender_public_key: str | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment of one node's plugin."""
    node = cluster.nodes[name]
    paths = node.paths
    mps = node.root / "mps"
    argv = [sys.executable, "-m", "deviceplugin.main",
            f"--device-plugin-path={paths.device_plugins}", f"--pod-resources-socket={paths.pod_resources_socket}",
            f"--kubeconfig={cluster.kubeconfig}", f"--node-name={name}", f"--grant-key-path={paths.grant_key}",
            f"--assignment-public-key-path={extender_public_key or cluster.workdir / 'extender.pub'}",
            f"--default-mode={node.spec.mode}", f"--mps-pipe-directory={mps / 'pipe'}",
            f"--device-root={node.root}",
            f"--mps-shm-directory={mps / 'shm'}", f"--mps-log-directory={mps / 'log'}",
            f"--mps-user={os.getuid()}", f"--mps-control-binary={FAKE_MPS_CONTROL}",
            "--listen=127.0.0.1:0", "--log-format=json", *(extra or [])]
    env = {**os.environ, "TESSERA_FAKE_NVML": str(node.nvml_description), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return argv, env


def stop_mps_daemon(mps_root: Path) -> None:
    """Stop the (fake) MPS control daemon a plugin started; it outlives the plugin by design."""
    pipe = mps_root / "pipe"
    if (pipe / "control").exists():
        env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe)}
        subprocess.run([sys.executable, FAKE_MPS_CONTROL], input="quit\n", env=env, text=True,
                       capture_output=True, timeout=5)


@contextmanager
def device_plugins(cluster, nodes: list[str] | None = None, extra: list[str] | None = None,
                   extender_public_key: str | None = None) -> Iterator[PluginProcesses]:
    """Start a plugin process for each node (all by default); SIGTERM them, then their MPS daemons, on exit."""
    plugins = PluginProcesses()
    try:
        for name in nodes or list(cluster.nodes):
            argv, env = plugin_command(cluster, name, extra, extender_public_key)
            log = cluster.nodes[name].root / "device-plugin.log"
            plugins.args[name] = (argv, env, log)
            plugins.restart(name)
        yield plugins
    finally:
        for name, proc in plugins.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in plugins.procs.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            stop_mps_daemon(cluster.nodes[name].root / "mps")
