"""Tessera's DRA driver on a real node: deploy/'s tessera-dra-plugin container, run as a process with
its paths moved into the node's folder (the kubelet's plugins_registry and plugins folders under its
--root-dir, the CDI folder the node's containerd reads), on the node's fake NVML, with its
ServiceAccount's token (so deploy/'s RBAC decides what it may do) and the node's config file
(``draplugin.gpus``, which the device plugin reads too)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from realcluster.components import Component, await_ready
from realcluster.install import container_args, rewrite_flags
from realcluster.nodeside import NodeSide
from simcluster.readiness import http_ok
from tessera import NAMESPACE
from tessera.daemonproc import REPO_ROOT, free_port

DAEMONSET = "tessera-dra-plugin"
CONTAINER = "dra-plugin"
SERVICE_ACCOUNT = "tessera-dra-plugin"
DRIVER = "gpu.tessera.io"


@dataclass
class DraSide:
    """The DRA driver's process and folders on one real node."""

    side: NodeSide
    plugin: Component
    metrics_url: str
    plugin_dir: Path      # its DRA socket and checkpoint
    cdi_dir: Path

    @property
    def checkpoint(self) -> Path:
        return self.plugin_dir / "checkpoint.json"

    def restart(self) -> None:
        """Stop the driver (SIGTERM) and start it again with the same flags; returns once /healthz says
        it is registered and its slice published."""
        self.plugin.stop()
        self.plugin.start()
        self.wait_ready("again")

    def wait_ready(self, when: str = "") -> None:
        await_ready(self.plugin, lambda: http_ok(f"{self.metrics_url}/healthz"),
                    f"the DRA driver of {self.side.node.name} registered and published {when}".strip())


def start_dra_plugin(cluster, side: NodeSide) -> DraSide:
    """deploy/'s DRA driver on ``side``'s node; returns once the kubelet registered it and its
    ResourceSlice is published (its /healthz)."""
    node = side.node
    args = container_args(cluster.tessera.objects, DAEMONSET, CONTAINER)
    port = free_port()
    plugin_dir = node.plugins_dir / DRIVER
    args = rewrite_flags(args, {
        "--plugins-registry-path": str(node.plugins_registry), "--plugin-path": str(plugin_dir),
        "--cdi-dir": str(node.cdi_dir), "--device-root": str(node.root),
        "--grant-key-path": str(side.grant_key), "--listen": f"127.0.0.1:{port}",
        "--mps-pipe-directory": str(side.mps_root / "pipe"), "--mps-shm-directory": str(side.mps_root / "shm"),
        "--kubeconfig": str(cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT)),
        "--node-name": node.name, "--config": str(node.root / "tessera.yaml")})
    plugin = Component(f"dra-plugin-{node.name}", [
        "env", f"PYTHONPATH={REPO_ROOT}", f"TESSERA_FAKE_NVML={side.description}", f"NODE_NAME={node.name}",
        sys.executable, "-m", "draplugin.main", *args], cluster.workdir / "logs" / f"dra-plugin-{node.name}.log")
    dra = DraSide(side, plugin.start(), f"http://127.0.0.1:{port}", plugin_dir, node.cdi_dir)
    try:
        dra.wait_ready()
    except BaseException:
        plugin.stop()
        raise
    return dra
