"""A real node beside the real control plane: containerd (with its runc shim and CRI) and a kubelet,
both built from upstream (scripts/build-kube.sh), registered in the real API server as a Node.

``start_node(cluster, name)`` writes containerd's configuration (config version 3, its root, state
and socket under the node's folder, the locally built pause image pinned as the sandbox image, Debian's
runc, oom_score_adj restricted to containerd's own: no CAP_SYS_RESOURCE here), a CNI configuration (bridge and host-local, Debian's containernetworking-plugins; it
makes the node Ready, and the tests' pods use ``hostNetwork`` so nothing on this machine's network
changes), imports the pause and busybox images (``realcluster.images``), then starts the kubelet
with the settings this sandbox needs (cgroupfs on cgroup v1 with ``failCgroupV1: false``, swap
allowed, no image garbage collection or eviction thresholds: nothing can be pulled again) and x509
plus webhook authentication, and waits for the Node to be Ready.

``stop_node`` leaves nothing behind: pods' containers killed through containerd, the kubelet and
containerd stopped, any shim left killed, every mount under the node's folder (the kubelet's
projected volumes, the containers' root filesystems) unmounted, the folder removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml

from realcluster.components import Component, await_ready
from simcluster.readiness import http_ok
from realcluster.images import busybox_image, pause_image, write_image, PAUSE_IMAGE
from simcluster.kubelet.simkubelet import KubeletPaths
from tessera.daemonproc import free_port, process_argvs
from tessera.log import get_logger

log = get_logger("realcluster")
CNI_PLUGINS = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
NAMESPACE = "k8s.io"   # containerd's namespace for the CRI
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")


class NodeUnavailable(RuntimeError):
    """This machine cannot run a real node; the message says what is missing."""


def node_prerequisites(binaries) -> list[str]:
    """What a real node needs and this machine lacks (empty: it can run one)."""
    missing = [f"{p} (scripts/build-kube.sh builds it)" for p in binaries.node_missing()]
    if os.geteuid() != 0:
        missing.append("root (containerd and the kubelet manage mounts and cgroups)")
    if not RUNC.exists():
        missing.append(f"{RUNC} (Debian package runc)")
    if not (CNI_PLUGINS / "bridge").exists():
        missing.append(f"{CNI_PLUGINS}/bridge (Debian package containernetworking-plugins)")
    if not Path("/bin/busybox").exists():
        missing.append("/bin/busybox (Debian package busybox-static)")
    if _socket_answers(DEVICE_PLUGINS / "kubelet.sock"):
        missing.append(f"a machine without a kubelet of its own ({DEVICE_PLUGINS}/kubelet.sock answers; the "
                       "kubelet's device-plugin folder is fixed, so only one kubelet can run per machine)")
    return missing


def _socket_answers(path: Path) -> bool:
    """Whether something listens on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _clear_device_plugins() -> None:
    """Empty the kubelet's device-plugin folder: sockets of an earlier node and, above all, its
    checkpoint (a kubelet would restore another run's device assignments from it)."""
    if DEVICE_PLUGINS.is_dir():
        for entry in DEVICE_PLUGINS.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@dataclass
class RealNode:
    """A running kubelet and containerd: the Node ``name`` in the real API server."""

    name: str
    root: Path
    binaries: object
    containerd: Component
    kubelet: Component | None = None
    kubelet_healthz: str = ""

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_resources_socket(self) -> Path:
        """The kubelet's pod-resources API (under its --root-dir)."""
        return KubeletPaths(self.kubelet_root).pod_resources_socket

    @property
    def device_plugins(self) -> Path:
        """The kubelet's device-plugin folder: its registration socket, the plugins' sockets and its
        checkpoint. Fixed in the kubelet (``pluginapi.DevicePluginPath``), whatever its --root-dir: one
        real kubelet per machine."""
        return DEVICE_PLUGINS

    @property
    def kubelet_socket(self) -> Path:
        return DEVICE_PLUGINS / "kubelet.sock"

    @property
    def checkpoint(self) -> Path:
        return DEVICE_PLUGINS / "kubelet_internal_checkpoint"

    @property
    def plugins_registry(self) -> Path:
        """Where the kubelet's plugin watcher finds DRA drivers' registration sockets (under its --root-dir)."""
        return self.kubelet_root / "plugins_registry"

    @property
    def plugins_dir(self) -> Path:
        """Where kubelet plugins keep their own sockets and state (under its --root-dir)."""
        return self.kubelet_root / "plugins"

    @property
    def cdi_dir(self) -> Path:
        """The folder this node's containerd reads CDI specs from (its /var/run/cdi)."""
        return self.root / "cdi"

    @property
    def containerd_config_dir(self) -> Path:
        """Where drop-ins for this node's containerd go (its /etc/containerd)."""
        return self.root / "etc" / "containerd"

    def restart_kubelet(self) -> None:
        """Stop the kubelet (SIGTERM) and start it again with the same flags; returns once its /healthz
        answers. Containers keep running under containerd meanwhile."""
        self.kubelet.stop()
        self.kubelet.start()
        await_ready(self.kubelet, lambda: http_ok(self.kubelet_healthz), f"the kubelet of {self.name} answering "
                    "/healthz after its restart")

    def restart_containerd(self) -> None:
        """Stop containerd and start it again with the same configuration (running containers keep
        running under their shims), as an admin does after changing its configuration."""
        self.containerd.stop()
        self.containerd.start()
        await_ready(self.containerd, lambda: self.ctr("version", check=False).returncode == 0,
                    f"containerd of {self.name} answering again after its restart")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``ctr`` against this node's containerd, in the CRI's namespace."""
        return subprocess.run([self.binaries["ctr"], "--address", str(self.containerd_socket), "-n", NAMESPACE,
                               *args], capture_output=True, text=True, timeout=120, check=check)


def _containerd_config(root: Path, runc: str) -> str:
    return f"""version = 3
root = "{root / 'containerd-root'}"
# Drop-ins (tessera-hook install writes one), as a node's /etc/containerd/config.toml imports them.
imports = ["{root / 'etc' / 'containerd' / 'conf.d'}/*.toml"]
state = "{root / 'containerd-state'}"

[grpc]
  address = "{root / 'containerd.sock'}"

[ttrpc]
  address = "{root / 'containerd.sock.ttrpc'}"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: a pod sandbox's oom_score_adj of -998 cannot be written. Containers get
  # at least containerd's own, as in rootless or nested setups.
  restrict_oom_score_adj = true
  # DRA drivers' CDI specs (the default is /etc/cdi and /var/run/cdi: the host's, not this node's).
  enable_cdi = true
  cdi_spec_dirs = ["{root / 'cdi'}"]

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{CNI_PLUGINS}"]
  conf_dir = "{root / 'cni'}"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  SystemdCgroup = false
"""


def _cni_config(subnet: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "tessera-real-node", "plugins": [
        {"type": "bridge", "bridge": "tessera0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]]}},
        {"type": "loopback"}]}


def host_address() -> str:
    """This machine's address on its default route (the kubelet refuses a loopback node IP, and the API
    server reaches the kubelet there for logs and exec). No packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 9))
        return probe.getsockname()[0]


def _kubelet_config(node: RealNode, ca: Path, address: str, taints: list[dict], healthz_port: int) -> dict:
    return {
        "registerWithTaints": list(taints),
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": address, "port": free_port(), "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"},
        "serializeImagePulls": False,
    }


def start_node(cluster, name: str, taints: list[dict] | None = None) -> RealNode:
    """containerd and a kubelet for Node ``name`` of ``cluster`` (a realcluster.RealCluster), Ready,
    registered with ``taints`` (``{key, value, effect}``)."""
    missing = node_prerequisites(cluster.binaries)
    if missing:
        raise NodeUnavailable("cannot run a real node here: needs " + "; ".join(missing))
    root = cluster.workdir / "real-nodes" / name
    (root / "cni").mkdir(parents=True)
    (root / "cdi").mkdir()
    _clear_device_plugins()
    logs = cluster.workdir / "logs"
    logs.mkdir(exist_ok=True)
    (root / "containerd.toml").write_text(_containerd_config(root, str(RUNC)))
    (root / "cni" / "10-tessera.conflist").write_text(json.dumps(_cni_config("10.244.7.0/24")))
    path = f"{cluster.binaries.folder}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    containerd = Component(f"containerd-{name}", ["env", f"PATH={path}", cluster.binaries["containerd"],
                                                  f"--config={root / 'containerd.toml'}"],
                           logs / f"containerd-{name}.log").start()
    node = RealNode(name, root, cluster.binaries, containerd)
    try:
        await_ready(containerd, lambda: node.ctr("version", check=False).returncode == 0,
                    f"containerd of {name} answering on its socket")
        for spec in (pause_image(Path(cluster.binaries["pause"])), busybox_image()):
            tarball = write_image(spec, root / f"{spec.name.rpartition('/')[2].replace(':', '-')}.oci.tar")
            node.ctr("images", "import", str(tarball))
        address = host_address()
        healthz_port = free_port()
        node.kubelet_healthz = f"http://127.0.0.1:{healthz_port}/healthz"
        (root / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(
            node, cluster.control.ca.cert, address, taints or [], healthz_port)))
        node.kubelet = Component(f"kubelet-{name}", [
            cluster.binaries["kubelet"], f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={cluster.node_kubeconfig(name)}", f"--root-dir={node.kubelet_root}",
            f"--hostname-override={name}", f"--node-ip={address}", f"--cert-dir={root / 'kubelet-pki'}", "--v=2"], logs / f"kubelet-{name}.log").start()
        await_ready(node.kubelet, lambda: node_ready(cluster, name), f"Node {name} registered and Ready")
    except BaseException:
        stop_node(node)
        raise
    log.info("real_node_ready", node=name, kubelet=node.kubelet.proc.pid, containerd=containerd.proc.pid)
    return node


def node_ready(cluster, name: str) -> bool:
    """Whether Node ``name`` exists in the API server with condition Ready True (polled: one API read,
    no kubectl process each time)."""
    try:
        node = cluster.core_v1().read_node(name)
    except kubernetes.client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def stop_node(node: RealNode) -> None:
    """Stop the node and leave nothing of it: containers, shims, processes, mounts, files."""
    if node.containerd.running():
        tasks = node.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            node.ctr("tasks", "kill", "-s", "SIGKILL", "--all", task, check=False)
    if node.kubelet is not None:
        node.kubelet.stop()
    node.containerd.stop()
    _kill_shims(node.containerd_socket)
    _clear_device_plugins()
    _unmount_under(node.root)
    shutil.rmtree(node.root, ignore_errors=True)
    log.info("real_node_stopped", node=node.name)


def _kill_shims(containerd_socket: Path) -> None:
    """SIGKILL the runc shims this node's containerd started: each runs in a session of its own, so a
    stop of containerd's process group leaves them."""
    for pid, argv in process_argvs():
        if argv[0].endswith(b"containerd-shim-runc-v2") and str(containerd_socket).encode() in argv:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _unmount_under(root: Path) -> None:
    """Every mount at or under ``root``, deepest first (lazily: a busy one goes once it is free)."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(set(points), key=lambda p: -p.count("/")):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
