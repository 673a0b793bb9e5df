"""Tessera's node side on a real node, as deploy/'s ``tessera-device-plugin`` DaemonSet installs it.

:func:`install_node_side` does, on a :class:`realcluster.node.RealNode`, what the DaemonSet's pod does
on a GPU node, each step with the arguments deploy/ gives that container (paths rewritten into the
node's folder, which stands for its ``/``):

1. the ``install-hook`` init container: ``tessera-hook install --runtime=containerd`` writes the base
   runtime spec carrying the hook and the ``conf.d`` drop-in into the node's containerd configuration
   folder; then containerd is restarted, as deploy/README.md asks the admin to (it reads its
   configuration only at start);
2. the ``mps-dirs`` init container: the MPS pipe, log and shm folders, owned by the MPS user;
3. the ``mps-control-daemon`` container: the MPS control daemon in the foreground, as the MPS user, in
   a process of its own (the fake control program: no GPU here);
4. the ``device-plugin`` container: ``tessera-device-plugin`` on the kubelet's real ``kubelet.sock``
   and pod-resources socket, on the fake NVML of the node's description (``TESSERA_FAKE_NVML``), with
   the node's fake device nodes (``make_device_nodes``) under its folder (``--device-root``) and a
   token of deploy/'s ServiceAccount.

The container images of deploy/ cannot run here (no registry), so the programs run as processes, as
:mod:`realcluster.install` runs the extender. The hook runs as runc runs any hook: on the host, from
the path the base spec names: a hook release built from this checkout (``python -m hook.release``,
what deploy/'s init container copies to /opt/tessera: this Python and only the packages the hook
imports, run isolated).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from realcluster.components import Component, await_ready
from realcluster.install import container_args, rewrite_flags
from deviceplugin.mpsdaemon import MpsDaemon
from realcluster.node import RealNode
from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL
from simcluster.fakenodes import make_device_nodes
from simcluster.readiness import http_ok
from tessera import NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN
from tessera.config import DraPluginConfig
from tessera.daemonproc import REPO_ROOT, free_port
from tessera.fakenvml import load_description
from tessera.log import get_logger

log = get_logger("realcluster")
DAEMONSET = "tessera-device-plugin"
GPU_NODE_LABEL = "tessera.io/gpu-node"

# A node of five A100s in four modes (the minor numbers are not the indices, as on many real nodes):
# GPUs 0-1 whole, 2 MPS, 3 time-sliced, 4 MIG (3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb). The tests and
# bench/real_node_bench.py run on it.
def mixed_node_description(name: str) -> dict:
    """The fake-NVML description of the mixed node called ``name``."""
    return {"node": name, "minor_numbers": [3, 0, 2, 1, 4, 6, 5, 8, 7], "gpus": [
        {"model": "A100-SXM4-80GB", "count": 4},
        {"model": "A100-SXM4-80GB", "count": 1, "mig": ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]},
        {"model": "A100-SXM4-80GB", "count": 2},
        {"model": "A100-SXM4-80GB", "count": 1, "mode": "mig"},   # MIG mode, nothing made: the DRA driver's
        {"model": "A100-SXM4-80GB", "count": 1}]}


MIXED_NODE_PLUGIN_CONFIG = {"gpu_modes": {2: "mps", 3: "timeslice", 4: "mig"}}
# The DRA driver's (the config's draplugin section): GPU 5 whole, GPU 6 shared through MPS, GPU 7 (in MIG
# mode) partitioned per claim, GPU 8 time-sliced between two claims; the device plugin leaves them out.
MIXED_NODE_DRA_CONFIG = {"gpus": [5, 6, 7, 8], "gpu_modes": {6: "mps", 7: "mig", 8: "timeslice"},
                         "timeslice_replicas": 2}
MIXED_NODE_DRA_GPUS = MIXED_NODE_DRA_CONFIG["gpus"]
MIXED_NODE_ALLOCATABLE = {
    "nvidia.com/gpu": "2", "nvidia.com/mps-core": "100", "nvidia.com/mps-memory": "80", "nvidia.com/gpu.shared": "4",
    "nvidia.com/mig-3g.40gb": "1", "nvidia.com/mig-2g.20gb": "1", "nvidia.com/mig-1g.10gb": "2"}


@dataclass
class NodeSide:
    """Tessera's processes and files on one real node."""

    node: RealNode
    description: Path
    plugin: Component
    mps_daemon: Component
    metrics_url: str
    mps_user: int

    @property
    def grant_key(self) -> Path:
        return self.node.root / "etc" / "tessera" / "node-grant.key"

    @property
    def state_dir(self) -> Path:
        """The hook's container records (the exporter reads them)."""
        return self.node.root / "run" / "tessera" / "containers"

    @property
    def mps_root(self) -> Path:
        return self.node.root / "run" / "tessera" / "mps"

    @property
    def config(self) -> Path:
        """The node's Tessera config file (``--config`` of the device plugin and the DRA driver)."""
        return self.node.root / "tessera.yaml"

    def restart_plugin(self, source: Path = REPO_ROOT, config: Path | None = None) -> None:
        """Stop the device plugin (SIGTERM) and start it again with the same flags, from the checkout at
        ``source`` (another version: a DaemonSet's rolling upgrade or rollback; default this one) and
        with ``config`` as its config file (default the node's)."""
        self.plugin.stop()
        config = config or self.config
        self.plugin.argv = [f"PYTHONPATH={source}" if a.startswith("PYTHONPATH=") else
                            f"--config={config}" if a.startswith("--config=") else a for a in self.plugin.argv]
        self.plugin.start()
        await_ready(self.plugin, lambda: http_ok(f"{self.metrics_url}/healthz"),
                    f"the device plugin of {self.node.name} answering /healthz again")


def log_events(path: Path, offset: int = 0) -> list[dict]:
    """The JSON log records of a Tessera daemon's log file from byte ``offset`` on (lines that are not
    JSON, grpc's own, are left out)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode(errors="replace").splitlines()
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _flag(args: list[str], name: str) -> str:
    """The value of ``--name=value`` in ``args`` (deploy/ writes every flag so)."""
    for arg in args:
        flag, eq, value = arg.partition("=")
        if eq and flag == name:
            return value
    raise LookupError(f"deploy/ gives no {name}")


def _under(root: Path, host_path: str) -> Path:
    """A host path of deploy/'s, inside the node's folder."""
    return root / host_path.lstrip("/")


def _install_hook(cluster, node: RealNode, objects: list[dict]) -> tuple[list[str], int]:
    """The install-hook init container: its args with host paths moved into the node's folder, run
    by this checkout's ``hook.main``; the hook's flags and the MPS user deploy/ sets."""
    args = container_args(objects, DAEMONSET, "install-hook")
    state_dir = _under(node.root, _flag(args, "--state-dir"))
    grant_key = _under(node.root, _flag(args, "--grant-key-path"))
    args = rewrite_flags(args, {"--state-dir": str(state_dir), "--grant-key-path": str(grant_key)})
    state_dir.mkdir(parents=True, exist_ok=True)
    # The release deploy/'s init container copies to the host (hook.release), built from this checkout:
    # runc runs it as it runs any hook, with only the environment its entry lists (none).
    release = node.root / "opt" / "tessera" / "current"
    built = subprocess.run([sys.executable, "-m", "hook.release", str(release)],
                           env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                           timeout=120, cwd=str(REPO_ROOT))
    if built.returncode != 0:
        raise RuntimeError(f"python -m hook.release failed: {built.stderr.strip()}")
    hook = release / "bin" / "tessera-hook"
    done = subprocess.run([sys.executable, "-m", "hook.main", "install", *args, "--root=/", f"--hook-path={hook}",
                           f"--containerd-config-dir={node.containerd_config_dir}"],
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          timeout=60, cwd=str(REPO_ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"tessera-hook install failed: {done.stderr.strip()}")
    log.info("real_node_hook_installed", node=node.name, output=done.stdout.strip().splitlines())
    return args, int(_flag(args, "--mps-user"))


def _mps_folders(root: Path, user: int) -> dict[str, Path]:
    """The mps-dirs init container: pipe, log and shm owned by the MPS user."""
    folders = {part: root / part for part in ("pipe", "log", "shm")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user, user)
    return folders


def _system_python() -> str:
    """A Python the MPS user can run (the fake daemon needs only the standard library; a virtual
    environment may sit in a folder that user cannot enter)."""
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _start_mps_daemon(node: RealNode, folders: dict[str, Path], user: int, logs: Path) -> tuple[Component, Path]:
    """The mps-control-daemon container: the (fake) control daemon in the foreground as the MPS user.
    Its program is copied beside the node (a checkout may sit in a folder the MPS user cannot read)."""
    control = node.root / "usr" / "bin" / "nvidia-cuda-mps-control"
    control.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FAKE_MPS_CONTROL, control)
    control.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "CUDA_MPS_PIPE_DIRECTORY": str(folders["pipe"]),
           "CUDA_MPS_LOG_DIRECTORY": str(folders["log"])}
    daemon = Component(f"mps-control-daemon-{node.name}",
                       ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                        "env", "-i", *(f"{k}={v}" for k, v in env.items()), _system_python(), str(control), "-f"],
                       logs / f"mps-control-daemon-{node.name}.log").start()
    await_ready(daemon, lambda: (folders["pipe"] / "control").exists(),
                f"the MPS control daemon of {node.name} listening")
    return daemon, control


def install_node_side(cluster, node: RealNode, description: dict, config: dict | None = None,
                      dra_config: dict | None = None) -> NodeSide:
    """Install Tessera's node side on ``node`` (GPUs from the fake-NVML ``description``; ``config``: a
    Tessera config file's ``deviceplugin`` section, given with ``--config``; ``dra_config``: its
    ``draplugin`` section, whose GPUs the device plugin leaves to the DRA driver) and wait until the node
    advertises its Tessera resources."""
    logs = cluster.workdir / "logs"
    # The MPS user must reach its folders under the cluster's (root-only) working folder.
    cluster.workdir.chmod(0o711)
    objects = cluster.tessera.objects
    desc_path = node.root / "gpus.yaml"
    desc_path.write_text(yaml.safe_dump(description, sort_keys=False))
    load_description(desc_path)
    if not make_device_nodes(node.root, desc_path):
        raise RuntimeError("the fake device nodes need root (mknod)")

    hook_args, mps_user = _install_hook(cluster, node, objects)
    node.restart_containerd()

    args = container_args(objects, DAEMONSET, "device-plugin")
    mps = _mps_folders(_under(node.root, _flag(args, "--mps-pipe-directory")).parent, mps_user)
    daemon, control = _start_mps_daemon(node, mps, mps_user, logs)
    port = free_port()
    config_path = node.root / "tessera.yaml"   # NodeSide.config
    config_doc = {"version": "v1", "deviceplugin": dict(config or {})}
    if dra_config:
        # plugin_path: the DRA driver's folder (realcluster.draside), whose checkpoint the device plugin
        # reads for the MPS daemon's defaults on the driver's MPS GPUs
        config_doc["draplugin"] = {"plugin_path": str(node.plugins_dir / DraPluginConfig().driver_name),
                                   **dra_config}
    config_path.write_text(yaml.safe_dump(config_doc))
    overuse = _under(node.root, _flag(args, "--overuse-dir"))
    overuse.mkdir(parents=True, exist_ok=True)
    args = rewrite_flags(args, {
        "--device-plugin-path": str(node.device_plugins),
        "--pod-resources-socket": str(node.pod_resources_socket),
        "--device-root": str(node.root),
        "--mps-pipe-directory": str(mps["pipe"]), "--mps-shm-directory": str(mps["shm"]),
        "--mps-log-directory": str(mps["log"]), "--mps-control-binary": str(control),
        "--overuse-dir": str(overuse), "--grant-key-path": _flag(hook_args, "--grant-key-path"),
        "--assignment-public-key-path": str(cluster.tessera.signing_public_key),
        "--listen": f"127.0.0.1:{port}",
        "--kubeconfig": str(cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN)),
        "--node-name": node.name, "--config": str(config_path)})
    plugin = Component(f"device-plugin-{node.name}", [
        "env", f"PYTHONPATH={REPO_ROOT}", f"TESSERA_FAKE_NVML={desc_path}", f"NODE_NAME={node.name}",
        sys.executable, "-m", "deviceplugin.main", *args], logs / f"device-plugin-{node.name}.log").start()
    side = NodeSide(node, desc_path, plugin, daemon, f"http://127.0.0.1:{port}", mps_user)
    try:
        cluster.kubectl("label", "node", node.name, f"{GPU_NODE_LABEL}=true", "--overwrite")
        await_ready(plugin, lambda: http_ok(f"{side.metrics_url}/healthz"),
                    f"the device plugin of {node.name} answering /healthz")
    except BaseException:
        stop_node_side(side)
        raise
    log.info("real_node_side_ready", node=node.name, plugin=plugin.proc.pid, mps_daemon=daemon.proc.pid)
    return side


def stop_node_side(side: NodeSide) -> None:
    """Stop the device plugin, then the MPS daemon (the plugin must not start another meanwhile), and
    any daemon the plugin started on the same pipe folder while its own was gone (``-d``, detached:
    not in any process group stopped here)."""
    side.plugin.stop()
    side.mps_daemon.stop()
    root = side.mps_root
    daemon = MpsDaemon(str(side.node.root / "usr" / "bin" / "nvidia-cuda-mps-control"), str(root / "pipe"),
                       str(root / "log"), user=side.mps_user)
    if not daemon.stop(10.0):
        log.error("mps_daemon_not_stopped", node=side.node.name, pid=daemon.pid())


def start_exporter(cluster, side: NodeSide, interval_s: float = 1.0) -> tuple[Component, str]:
    """deploy/'s tessera-exporter on the node (its container's args, paths into the node's folder, the
    real pod-resources socket, the host's /proc, its ServiceAccount's token); returns it and the URL of
    its /metrics once /healthz answers."""
    node = side.node
    args = container_args(cluster.tessera.objects, "tessera-exporter", "exporter")
    port = free_port()
    args = rewrite_flags(args, {
        "--listen": f"127.0.0.1:{port}", "--pod-resources-socket": str(node.pod_resources_socket),
        "--state-dir": str(side.state_dir), "--overuse-dir": str(_under(node.root, _flag(args, "--overuse-dir"))),
        "--interval-s": str(interval_s), "--node-name": node.name,
        "--kubeconfig": str(cluster.service_account_kubeconfig(NAMESPACE, "tessera-exporter"))})
    exporter = Component(f"exporter-{node.name}", [
        "env", f"PYTHONPATH={REPO_ROOT}", f"TESSERA_FAKE_NVML={side.description}", f"NODE_NAME={node.name}",
        sys.executable, "-m", "exporter.main", *args], cluster.workdir / "logs" / f"exporter-{node.name}.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        await_ready(exporter, lambda: http_ok(f"{url}/healthz"), f"the exporter of {node.name} answering /healthz")
    except BaseException:
        exporter.stop()
        raise
    return exporter, f"{url}/metrics"
