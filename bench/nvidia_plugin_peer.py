"""NVIDIA's device plugin as a peer of Tessera's: both on NVIDIA's mock NVML, each registered with its own
simulated kubelet (``simcluster.kubelet.devicemanager``, over real unix sockets), measured interleaved.

``scripts/build-nvidia-device-plugin.sh`` builds the peer (pinned in ``tools/nvidia-device-plugin/go.mod``),
``scripts/build-mocknvml.sh`` the mock libnvidia-ml.so.1 both load through ``LD_LIBRARY_PATH`` (Tessera's
plugin through pynvml, with ``TESSERA_FAKE_NVML`` empty; NVIDIA's through go-nvml's dlopen), configured by
one profile: NVIDIA's HGX H100 profile (8 GPUs). What NVIDIA's plugin needed to run here:

- its own sockets are fixed at ``/var/lib/kubelet/device-plugins/nvidia-<name>.sock`` (only
  ``--kubelet-socket`` moves): it runs in a private mount namespace (``unshare --mount``) where a tmpfs
  covers ``/var/lib`` and the stand-in's folder is bind-mounted at that path; nothing on the host changes;
- ``--device-list-strategy=envvar`` (``NVIDIA_VISIBLE_DEVICES``) and no ``--pass-device-specs``: no
  ``/dev/nvidia*``, no CDI, no nvidia-ctk; ``--fail-on-init-error``, ``--mig-strategy=none``;
- nothing else: its health check runs as shipped (NVML events on the mock; every GPU stays Healthy).

Time-slicing: NVIDIA's plugin with ``sharing.timeSlicing.resources: [{name: nvidia.com/gpu, replicas: 4}]``
(IDs ``<uuid>::<n>`` under ``nvidia.com/gpu``), Tessera's with ``--default-mode=timeslice`` (4 replicas
under ``nvidia.com/gpu.shared``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcluster.kubelet.devicemanager import DeviceManager  # noqa: E402
from simcluster.processes import stop_process  # noqa: E402
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api  # noqa: E402

KUBELET_DEVICE_PLUGINS = "/var/lib/kubelet/device-plugins"  # NVIDIA's plugin's sockets, fixed in its code
GPU, SHARED = "nvidia.com/gpu", "nvidia.com/gpu.shared"
REPLICAS = 4
TIME_SLICING = {"version": "v1", "sharing": {"timeSlicing": {"resources": [{"name": GPU, "replicas": REPLICAS}]}}}
# (label, Tessera's --default-mode and resource, NVIDIA's config or None)
SHARES = [("whole GPU", "exclusive", GPU, None), ("time-sliced replica", "timeslice", SHARED, TIME_SLICING)]


def _built(script: str, find: bool) -> tuple[Path | None, str]:
    """The folder ``scripts/<script>`` prints (``--find``: only where it is built), or None and why not."""
    argv = ["bash", str(REPO / "scripts" / script)] + (["--find"] if find else [])
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode == 0:
        return Path(done.stdout.strip()), ""
    if find and done.returncode == 4:
        return None, f"not built (bash scripts/{script} builds it)"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return None, f"{script} exit {done.returncode}: {lines[-1] if lines else 'no message'}"


def build(find: bool = False) -> tuple[Path | None, Path | None, str]:
    """(NVIDIA's plugin binary, the mock NVML folder, "") building each where needed (``find``: only
    looking), or Nones and why not. Needs root: the plugin's fixed socket folder is a mount."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None, None, "needs root and unshare (its sockets' fixed folder is bind-mounted in a mount namespace)"
    plugin, why = _built("build-nvidia-device-plugin.sh", find)
    if plugin is None:
        return None, None, f"NVIDIA's device plugin: {why}"
    mock, why = _built("build-mocknvml.sh", find)
    if mock is None:
        return None, None, f"NVIDIA's mock NVML: {why}"
    return plugin / "nvidia-device-plugin", mock, ""


def write_h100_profile(mock: Path, path: Path) -> Path:
    """NVIDIA's HGX H100 profile (its 8 GPUs), as the mock reads it."""
    path.write_text((mock / "configs" / "mock-nvml-config-h100.yaml").read_text())
    return path


def profile_uuids(profile: Path) -> list[str]:
    """The GPU UUIDs the profile gives the mock, in index order."""
    return [d["uuid"] for d in yaml.safe_load(profile.read_text())["devices"]]


class RegisterClock:
    """When the stand-in received each Register, per resource (``time.perf_counter``)."""

    def __init__(self, manager: DeviceManager) -> None:
        self.seen: dict[str, list[float]] = {}
        self._cond = threading.Condition()
        registry = manager.plugins
        register = registry.register

        def timed(request: api.RegisterRequest, context: grpc.ServicerContext) -> api.Empty:
            with self._cond:
                self.seen.setdefault(request.resource_name, []).append(time.perf_counter())
                self._cond.notify_all()
            return register(request, context)

        registry.register = timed  # the servicer calls the registry's register: timed on entry

    def wait(self, resource: str, count: int, timeout_s: float) -> float:
        """The time of the ``count``-th Register of ``resource``, waiting for it."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.seen.get(resource, [])) >= count, timeout_s):
                raise TimeoutError(f"no Register #{count} of {resource} in {timeout_s:.0f} s")
            return self.seen[resource][count - 1]


@dataclass
class Node:
    """One simulated kubelet (registration socket in ``plugin_dir``) and the plugin process registered there."""

    root: Path
    plugin_dir: Path
    manager: DeviceManager
    clock: RegisterClock
    resource: str
    spawn: Callable[[], subprocess.Popen]
    proc: subprocess.Popen | None = None
    registrations: int = 0

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the plugin; seconds from the start to the stand-in receiving its Register (then waits for
        its devices)."""
        t0 = time.perf_counter()
        self.proc = self.spawn()
        return self._registered(timeout_s, t0)

    def stop(self) -> None:
        """Stop the plugin (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None:
            stop_process(self.proc, 10.0)
            self.proc = None

    def kubelet_restart(self, timeout_s: float = 60.0) -> float:
        """What a kubelet restart does to the registration socket (removed; a new one served); seconds from
        the new socket being served to the plugin's Register."""
        self.manager.stop()
        t0 = time.perf_counter()
        self.manager.start()
        return self._registered(timeout_s, t0)

    def _registered(self, timeout_s: float, t0: float) -> float:
        self.registrations += 1
        try:
            took = self.clock.wait(self.resource, self.registrations, timeout_s) - t0
            deadline = time.monotonic() + timeout_s
            while self.manager.allocatable().get(self.resource, 0) == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.resource} registered, but no healthy devices listed")
                time.sleep(0.005)
        except TimeoutError as err:
            raise TimeoutError(f"{err}; plugin log: {self.log_tail()}") from None
        return took

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the plugin's log."""
        try:
            return " | ".join((self.root / "plugin.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stub(self) -> deviceplugin_grpc.DevicePluginStub:
        """A client of the plugin's socket, as the kubelet dials the endpoint it registered."""
        endpoint = self.manager.plugins.live_endpoint(self.resource)
        if endpoint is None:
            raise RuntimeError(f"{self.resource} has no live endpoint")
        return deviceplugin_grpc.DevicePluginStub(grpc.insecure_channel(f"unix://{endpoint.socket_path}"))

    def allocate_request(self, stub: deviceplugin_grpc.DevicePluginStub) -> api.AllocateRequest:
        """The kubelet's request for one device: the plugin's preferred one, else the first listed."""
        available = sorted(self.manager.devices(self.resource))
        ids: list[str] = []
        try:
            preferred = stub.GetPreferredAllocation(api.PreferredAllocationRequest(container_requests=[
                api.ContainerPreferredAllocationRequest(available_deviceIDs=available, allocation_size=1)]))
            ids = list(preferred.container_responses[0].deviceIDs)
        except grpc.RpcError:
            pass
        return api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(devices_ids=ids or available[:1])])


def _popen(argv: list[str], env: dict[str, str], root: Path, cwd: Path | None = None) -> subprocess.Popen:
    """The plugin process, its stderr appended to ``root/plugin.log``."""
    with open(root / "plugin.log", "a") as log:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=cwd)


def tessera_spawner(root: Path, plugin_dir: Path, env: dict[str, str], mode: str) -> Callable[[], subprocess.Popen]:
    """Tessera's device plugin on the mock (pynvml loads it: ``TESSERA_FAKE_NVML`` empty)."""
    argv = [sys.executable, "-m", "deviceplugin.main", f"--device-plugin-path={plugin_dir}",
            f"--pod-resources-socket={root / 'pr.sock'}", f"--grant-key-path={root / 'grant.key'}",
            f"--default-mode={mode}", f"--timeslice-replicas={REPLICAS}", "--listen=127.0.0.1:0",
            "--log-level=warning", "--node-name=bench", f"--mps-pipe-directory={root / 'mps'}"]
    env = {**os.environ, **env, "TESSERA_FAKE_NVML": "", "PYTHONPATH": str(REPO)}
    return lambda: _popen(argv, env, root, REPO)


def nvidia_spawner(binary: Path, root: Path, plugin_dir: Path, env: dict[str, str],
                   config: dict | None) -> Callable[[], subprocess.Popen]:
    """NVIDIA's device plugin on the mock, in a mount namespace where its fixed socket folder is ``plugin_dir``."""
    flags = [f"--kubelet-socket={plugin_dir / 'kubelet.sock'}", "--mig-strategy=none", "--fail-on-init-error",
             "--device-list-strategy=envvar", "--device-id-strategy=uuid"]
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        flags.append(f"--config-file={root / 'config.yaml'}")
    inside = (f"mount -t tmpfs tessera-nvdp /var/lib && mkdir -p {KUBELET_DEVICE_PLUGINS} && "
              f"mount --bind {shlex.quote(str(plugin_dir))} {KUBELET_DEVICE_PLUGINS} && "
              f"exec {shlex.join([str(binary), *flags])}")
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside]
    env = {**os.environ, **env}
    return lambda: _popen(argv, env, root)


@contextmanager
def stand_in(name: str) -> Iterator[tuple[Path, Path, DeviceManager, RegisterClock]]:
    """A simulated kubelet serving its registration socket in a fresh folder; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=f"tnvdp-{name}-", dir="/tmp"))
    plugin_dir = root / "dp"
    plugin_dir.mkdir()
    manager = DeviceManager(str(plugin_dir), str(root / "ckpt"), pod_resources_socket=str(root / "pr.sock"))
    clock = RegisterClock(manager)
    manager.start()
    try:
        yield root, plugin_dir, manager, clock
    finally:
        manager.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Figures:
    """One plugin's measurements (seconds) and one Allocate answer's environment per share."""

    registration: list[float] = field(default_factory=list)
    reregistration: list[float] = field(default_factory=list)
    allocate: dict[str, list[float]] = field(default_factory=dict)
    answer_envs: dict[str, dict[str, str]] = field(default_factory=dict)
    asked: dict[str, list[str]] = field(default_factory=dict)


PLUGINS = ("Tessera", "NVIDIA")


def measure(binary: Path, mock: Path, rounds: int, starts: int, restarts: int, warmup: int = 10) -> dict[str, Figures]:
    """Both plugins on the same mock H100 node, interleaved (each goes first in turn): for each share, the
    registration from start (``starts`` times), Allocate of one device (``rounds`` times, after ``warmup``)
    and re-registration after a kubelet restart (``restarts`` times)."""
    figures = {who: Figures() for who in PLUGINS}
    with tempfile.TemporaryDirectory(prefix="tnvdp-profile-") as tmp:
        profile = write_h100_profile(mock, Path(tmp) / "h100.yaml")
        env = {"LD_LIBRARY_PATH": str(mock / "lib"), "MOCK_NVML_CONFIG": str(profile)}
        for label, mode, tessera_resource, config in SHARES:
            with stand_in("tessera") as (t_root, t_dir, t_manager, t_clock), \
                    stand_in("nvidia") as (n_root, n_dir, n_manager, n_clock):
                nodes = {"Tessera": Node(t_root, t_dir, t_manager, t_clock, tessera_resource,
                                         tessera_spawner(t_root, t_dir, env, mode)),
                         "NVIDIA": Node(n_root, n_dir, n_manager, n_clock, GPU,
                                        nvidia_spawner(binary, n_root, n_dir, env, config))}
                try:
                    _measure_share(label, nodes, figures, rounds, starts if config is None else 1, restarts, warmup)
                finally:
                    for node in nodes.values():
                        node.stop()
    return figures


def _in_turn(k: int) -> tuple[str, ...]:
    return PLUGINS if k % 2 else PLUGINS[::-1]


def _measure_share(label: str, nodes: dict[str, Node], figures: dict[str, Figures], rounds: int, starts: int,
                   restarts: int, warmup: int) -> None:
    for k in range(starts):  # registration from a cold start: the last start stays up for the rest
        for who in _in_turn(k):
            took = nodes[who].start()
            if label == SHARES[0][0]:
                figures[who].registration.append(took)
            if k < starts - 1:
                nodes[who].stop()
    stubs = {who: node.stub() for who, node in nodes.items()}
    requests = {who: node.allocate_request(stubs[who]) for who, node in nodes.items()}
    for who in PLUGINS:
        answer = stubs[who].Allocate(requests[who])
        figures[who].answer_envs[label] = dict(answer.container_responses[0].envs)
        figures[who].asked[label] = list(requests[who].container_requests[0].devices_ids)
        figures[who].allocate[label] = []
    for k in range(rounds + warmup):
        for who in _in_turn(k):
            t0 = time.perf_counter()
            stubs[who].Allocate(requests[who])
            if k >= warmup:
                figures[who].allocate[label].append(time.perf_counter() - t0)
    if label != SHARES[0][0]:
        return
    for k in range(restarts):
        for who in _in_turn(k):
            figures[who].reregistration.append(nodes[who].kubelet_restart())
