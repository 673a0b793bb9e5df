"""Device plugins for the embedded cluster: one ``tessera-device-plugin`` process per simulated node.

    with simcluster.running(desc) as cluster, device_plugins(cluster) as plugins:
        ...

Each process runs on its node's fake NVML (``TESSERA_FAKE_NVML``), with that node's plugin
directory, pod-resources socket, node name, grant key (the one the node's hook reads), and MPS
directories under the node root, the fake MPS control program standing in for NVIDIA's, and a
kubeconfig that authenticates as the plugin's ServiceAccount, as deploy/ runs it.
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

from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL
from deviceplugin.mpsdaemon import MpsDaemon
from simcluster.readiness import Awaited
from tessera import NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN
from tessera.log import get_logger

REPO_ROOT = Path(__file__).resolve().parents[1]
log = get_logger("simcluster")


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
    kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN)
    argv = [sys.executable, "-m", "deviceplugin.main",
            f"--device-plugin-path={paths.device_plugins}", f"--pod-resources-socket={paths.pod_resources_socket}",
            f"--kubeconfig={kubeconfig}", f"--node-name={name}", f"--grant-key-path={paths.grant_key}",
            f"--assignment-public-key-path={extender_public_key or cluster.workdir / 'extender.pub'}",
            f"--default-mode={node.spec.mode}", f"--mps-pipe-directory={mps / 'pipe'}",
            f"--device-root={node.root}",
            f"--mps-shm-directory={mps / 'shm'}", f"--mps-log-directory={mps / 'log'}",
            f"--mps-user={os.getuid()}", f"--mps-control-binary={FAKE_MPS_CONTROL}",
            "--listen=127.0.0.1:0", "--log-format=json", *(extra or [])]
    env = {**os.environ, "TESSERA_FAKE_NVML": str(node.nvml_description), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return argv, env


def stop_mps_daemon(mps_root: Path, timeout_s: float = 20.0) -> bool:
    """Stop the (fake) MPS control daemon a plugin started under ``mps_root`` (it outlives the plugin
    by design): ``quit``, then SIGTERM, then SIGKILL. True when none is left."""
    daemon = MpsDaemon(FAKE_MPS_CONTROL, str(mps_root / "pipe"), str(mps_root / "log"))
    stopped = daemon.stop(timeout_s)
    if not stopped:
        log.error("mps_daemon_not_stopped", pipe=daemon.pipe_dir, pid=daemon.pid())
    return stopped


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
        try:
            for proc in plugins.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in plugins.procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        finally:
            for name in plugins.args:  # after the plugins: none starts a daemon any more
                stop_mps_daemon(cluster.nodes[name].root / "mps")
