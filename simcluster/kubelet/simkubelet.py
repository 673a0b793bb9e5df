"""One simulated kubelet: registers its Node, keeps its device capacity, admits and runs its pods.

It reproduces what Tessera must survive: node status that lags the device plugin, pods admitted one
at a time in the order they reach the node, device resources visited in random order, admission
failures that are final, and restarts that drop device capacity to 0 until each plugin registers
again. Admitted pods are run by its pod workers (``podworkers``): containers restarted as their
``restartPolicy`` says, the pod's devices kept until it finishes; their logs are served on the Node's
kubelet endpoint for ``kubectl logs``.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

from simcluster.cluster import NodeSpec
from simcluster.kubelet import oci
from simcluster.kubelet.device_admission import AdmissionResult, admit_pod
from simcluster.kubelet.apiclient import KubeletApi
from simcluster.kubelet.containerlogs import ContainerLogServer
from simcluster.kubelet.containers import ContainerRunner, SimulatedRunner
from simcluster.kubelet.devicemanager import AdmissionError, DeviceManager
from simcluster.kubelet.nvidiasmi import PATH_IN_CONTAINER as NVIDIA_SMI_PATH
from simcluster.kubelet.nvidiasmi import nvidia_smi_script
from simcluster.kubelet.podworkers import PodWorkers
from simcluster.kubelet.restarts import INITIAL_BACKOFF_S, MAX_BACKOFF_S, CrashLoopBackOff
from tessera import LABEL_GPU_MODE
from tessera.follow import follow
from tessera.kube import now_rfc3339
from tessera.log import get_logger

KUBELET_VERSION = "v1.31.0-tessera-sim"


@dataclass(frozen=True)
class KubeletPaths:
    """Where one simulated node keeps its sockets and files."""

    root: Path

    @property
    def device_plugins(self) -> Path:
        return self.root / "device-plugins"

    @property
    def kubelet_socket(self) -> Path:
        return self.device_plugins / "kubelet.sock"

    @property
    def checkpoint(self) -> Path:
        return self.device_plugins / "kubelet_internal_checkpoint"

    @property
    def pod_resources_socket(self) -> Path:
        return self.root / "pod-resources" / "kubelet.sock"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def tessera_state(self) -> Path:
        """The node's Tessera state directory: the hook's container records and grant bindings."""
        return self.root / "tessera" / "containers"

    @property
    def grant_key(self) -> Path:
        """The per-node key that signs grants (device plugin) and verifies them (hook)."""
        return self.root / "tessera" / "grant.key"


class SimKubelet:
    """A kubelet for one node of the embedded cluster."""

    def __init__(self, spec: NodeSpec, api_url: str | kubernetes.client.Configuration, root: Path, *,
                 runtime: str = "containerd",
                 status_delay_s: float = 0.2, seed: int | None = None,
                 container_annotations: tuple[str, ...] = oci.DEFAULT_CONTAINER_ANNOTATIONS,
                 plugin_removal_grace_s: float = 300.0, oci_runtime: str | None = None,
                 hook_flags: list[str] | None = None,
                 restart_backoff_s: tuple[float, float] = (INITIAL_BACKOFF_S, MAX_BACKOFF_S),
                 nvml_description: Path | None = None, node_lease_s: int = 0) -> None:
        """``api_url``: the API server's URL, or a client configuration with the node's credentials (a
        real API server). ``restart_backoff_s``: the container restart back-off (first delay, cap);
        ``nvml_description``: the node's fake-NVML file, for the ``nvidia-smi`` its GPU containers get
        (else made from ``spec``). ``node_lease_s`` > 0: heartbeat as the real kubelet does, a Lease in
        kube-node-lease of that duration renewed every quarter of it, and register with the
        ``node.kubernetes.io/not-ready`` taint that a real node lifecycle controller lifts."""
        if runtime not in oci.RUNTIME_FLAVOURS:
            raise ValueError(f"runtime flavour {runtime!r} is not one of {', '.join(oci.RUNTIME_FLAVOURS)}")
        self.spec = spec
        self.node_lease_s = node_lease_s
        self.paths = KubeletPaths(Path(root))
        self.runtime = runtime
        self.status_delay_s = status_delay_s
        self.container_annotations = container_annotations
        self._rng = random.Random(seed)
        self._log = get_logger("simkubelet", node=spec.name)
        self._api = KubeletApi(api_url, spec.name)
        for path in (self.paths.device_plugins, self.paths.pod_resources_socket.parent, self.paths.containers):
            path.mkdir(parents=True, exist_ok=True)
        self.devices = DeviceManager(str(self.paths.device_plugins), str(self.paths.checkpoint),
                                     on_resources_changed=self._resources_changed,
                                     pod_resources_socket=str(self.paths.pod_resources_socket),
                                     removal_grace_s=plugin_removal_grace_s)
        self._stop = threading.Event()
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._seen: set[str] = set()          # pod UIDs queued or admitted
        self._finished: set[str] = set()      # pod UIDs whose devices were released
        self._lock = threading.Lock()
        self._known_resources: set[str] = set()
        self._status_timer: threading.Timer | None = None
        self._pending_status: tuple[dict[str, int], dict[str, int]] | None = None
        self._watch_resp: Any = None
        self._threads: list[threading.Thread] = []
        self.pods = PodWorkers(self._api, self.paths.root, runtime, CrashLoopBackOff(*restart_backoff_s),
                               lambda pod: self._finish(pod, delete=False), self._stop)
        self.runner: ContainerRunner | None = None
        self._nvidia_smi = ""
        if oci_runtime:
            # Containers run for real under runc or crun, with tessera-hook at createRuntime and poststop.
            self.paths.tessera_state.mkdir(parents=True, exist_ok=True)
            # The node's plugin runs its MPS daemon as this user too (simcluster.plugins).
            flags = hook_flags if hook_flags is not None else [
                "--runtime", runtime, "--state-dir", str(self.paths.tessera_state),
                "--grant-key-path", str(self.paths.grant_key), "--mps-user", str(os.getuid())]
            self.runner = ContainerRunner(oci_runtime, self.paths.root / "runtime-state", flags,
                                          self.pods.started, self.pods.exited)
            self._nvidia_smi = _node_nvidia_smi(spec, nvml_description)
        self.pods.runner = self.runner or SimulatedRunner(self.pods.started, self.pods.exited)
        self.logs = ContainerLogServer(self.pods.log_source)

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.start()
        self._register_node()
        self.devices.start()
        loops = [(self._watch_loop, "watch"), (self._admit_loop, "admit")]
        if self.node_lease_s:
            loops.append((self._lease_loop, "lease"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"kubelet-{self.spec.name}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._log.info("kubelet_started", plugin_dir=str(self.paths.device_plugins), runtime=self.runtime)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        _interrupt_response(self._watch_resp)
        with self._lock:
            if self._status_timer:
                self._status_timer.cancel()
        self.pods.stop()
        self.pods.runner.stop()
        self.logs.stop()
        self.devices.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._api.close()
        self._log.info("kubelet_stopped")

    def restart(self) -> None:
        """What a kubelet restart does to device plugins: socket recreated, capacity 0 until re-registration."""
        self._log.info("kubelet_restarting")
        self.devices.restart()
        # The restarted kubelet's first node status has 0 for every device resource whose plugin has
        # not registered again yet; later changes follow the status delay.
        with self._lock:
            known = set(self._known_resources)
        base = self._base_capacity()
        zeros = {name: "0" for name in known}
        self._api.patch_node_status({"status": {"capacity": {**base, **zeros}, "allocatable": {**base, **zeros}}})
        self._resources_changed(self.devices.capacity(), self.devices.allocatable())

    # node status -----------------------------------------------------------------------------

    def _base_capacity(self) -> dict[str, str]:
        return {"cpu": str(self.spec.cpu_milli // 1000) if self.spec.cpu_milli % 1000 == 0
                else f"{self.spec.cpu_milli}m",
                "memory": f"{self.spec.memory_mib}Mi", "pods": "110"}

    def _register_node(self) -> None:
        labels = {"kubernetes.io/hostname": self.spec.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", LABEL_GPU_MODE: self.spec.mode, **self.spec.labels}
        base = self._base_capacity()
        node_id = uuid.uuid5(uuid.NAMESPACE_DNS, self.spec.name).hex
        status = {
            "capacity": base, "allocatable": base,
            "conditions": [self._ready_condition()],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.spec.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs.port}},
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64", "osImage": "Tessera simulated node",
                         "kernelVersion": platform.release(), "containerRuntimeVersion": f"{self.runtime}://sim",
                         "machineID": node_id, "systemUUID": node_id, "bootID": node_id},
        }
        if self._api.get_node() is None:
            spec = {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]} \
                if self.node_lease_s else {}
            self._api.create_node({"apiVersion": "v1", "kind": "Node", "spec": spec,
                                   "metadata": {"name": self.spec.name, "labels": labels}, "status": status})
        else:
            self._api.patch_node({"metadata": {"labels": labels}})
        self._api.patch_node_status({"status": status})

    def _resources_changed(self, capacity: dict[str, int], allocatable: dict[str, int]) -> None:
        """Called by the device manager on every change; the Node is updated after the status delay."""
        with self._lock:
            self._pending_status = (dict(capacity), dict(allocatable))
            if self._status_timer is None and not self._stop.is_set():
                self._status_timer = threading.Timer(self.status_delay_s, self._flush_status)
                self._status_timer.daemon = True
                self._status_timer.start()

    def _flush_status(self) -> None:
        with self._lock:
            self._status_timer = None
            pending, self._pending_status = self._pending_status, None
            if pending is None:
                return
            capacity, allocatable = pending
            self._known_resources |= set(capacity)
            # A resource once seen stays on the Node with 0 while its plugin is away, as the kubelet shows it.
            cap = {name: str(capacity.get(name, 0)) for name in self._known_resources}
            alloc = {name: str(allocatable.get(name, 0)) for name in self._known_resources}
        base = self._base_capacity()
        try:
            self._api.patch_node_status({"status": {"capacity": {**base, **cap}, "allocatable": {**base, **alloc}}})
            self._log.info("node_status_updated", capacity=cap, allocatable=alloc)
        except Exception as exc:  # noqa: BLE001 - the next change retries
            self._log.warning("node_status_update_failed", error=str(exc))

    def _lease_loop(self) -> None:
        """Renew the node's Lease every quarter of its duration, and post the Ready condition as often
        as the real kubelet's node status report (every 5 min, or here every lease duration)."""
        last_status = 0.0
        while not self._stop.is_set():
            try:
                self._api.renew_lease(self.node_lease_s)
                if time.monotonic() - last_status >= self.node_lease_s:
                    self._api.patch_node_status({"status": {"conditions": [self._ready_condition()]}})
                    last_status = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the next renewal retries
                self._log.warning("node_lease_renew_failed", error=str(exc))
            self._stop.wait(self.node_lease_s / 4)

    @staticmethod
    def _ready_condition() -> dict:
        return {"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339(),
                "lastTransitionTime": now_rfc3339()}

    # pods ------------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        follow("pods", self._api.list_pods,
               lambda version: self._api.watch_pods(version, timeout_s=30, on_response=self._set_watch_resp),
               on_list=self._on_pods_listed, on_event=self._on_pod, stop=self._stop, log=self._log)

    def _on_pods_listed(self, pods: list[dict]) -> None:
        for pod in pods:
            self._on_pod("ADDED", pod)

    def _set_watch_resp(self, resp: Any) -> None:
        self._watch_resp = resp

    def _on_pod(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self._finish(pod, delete=kind != "DELETED")
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        with self._lock:
            if uid in self._seen or phase != "Pending":
                if phase in ("Running",) and uid not in self._seen:
                    self._seen.add(uid)  # admitted before a kubelet restart: keep its devices
                return
            self._seen.add(uid)
        self._queue.put(pod)

    def _finish(self, pod: dict, delete: bool) -> None:
        meta = pod["metadata"]
        with self._lock:
            first = meta["uid"] not in self._finished
            self._finished.add(meta["uid"])
        if delete:
            self.pods.forget(meta["uid"])
        if first:
            self.pods.runner.kill_pod(meta["uid"])
            self.devices.release_pod(meta["uid"])
            self._log.info("pod_devices_released", pod=meta["name"], namespace=meta.get("namespace"))
        if delete:
            self._api.delete_pod_now(meta.get("namespace", "default"), meta["name"], meta["uid"])

    def _admit_loop(self) -> None:
        while True:
            pod = self._queue.get()
            if pod is None or self._stop.is_set():
                return
            try:
                self._admit(pod)
            except Exception as exc:  # noqa: BLE001 - one pod must not stop the node
                self._log.error("pod_admission_crashed", pod=pod["metadata"]["name"], error=str(exc))
            finally:
                self._queue.task_done()

    def _admit(self, pod: dict) -> None:
        meta = pod["metadata"]
        namespace = meta.get("namespace", "default")
        result = admit_pod(pod, self.devices, self._rng, AdmissionError)
        if not result.admitted:
            self._fail(pod, result)
            return
        bundles = {c["name"]: self._write_bundle(pod, c, result) for c in pod["spec"].get("containers", [])}
        self._log.info("pod_admitted", pod=meta["name"], namespace=namespace,
                       devices={c: len(r) for c, r in result.responses.items()})
        self.pods.run(pod, bundles)

    def _write_bundle(self, pod: dict, container: dict, result: AdmissionResult) -> Path:
        bundle = self.paths.containers / pod["metadata"]["uid"] / container["name"]
        (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
        config = oci.build_config(pod, container["name"], result.responses.get(container["name"], []),
                                  rootfs=str(bundle / "rootfs"), flavour=self.runtime,
                                  container_annotations=self.container_annotations)
        if self.runner:
            # NVIDIA's container toolkit puts the driver's nvidia-smi into a container given GPUs.
            given = bool(result.responses.get(container["name"])) and self._nvidia_smi
            config = self.runner.prepare(bundle, config, {NVIDIA_SMI_PATH: self._nvidia_smi} if given else None)
        (bundle / "config.json").write_text(json.dumps(config, indent=2))
        return bundle

    def bundle_path(self, pod_uid: str, container: str) -> Path:
        """Where this kubelet wrote a container's OCI bundle."""
        return self.paths.containers / pod_uid / container

    def _fail(self, pod: dict, result: AdmissionResult) -> None:
        meta = pod["metadata"]
        self._log.warning("pod_admission_failed", pod=meta["name"], reason=result.failed_reason,
                          message=result.failed_message)
        self._api.patch_pod_status(meta.get("namespace", "default"), meta["name"],
                                   {"phase": "Failed", "reason": result.failed_reason,
                                    "message": result.failed_message})
        self._api.post_event(pod, "Warning", result.failed_reason, result.failed_message)


def _node_nvidia_smi(spec: NodeSpec, nvml_description: Path | None) -> str:
    """The node's nvidia-smi script, from its fake-NVML file or its spec; '' where neither describes GPUs."""
    from simcluster.fakenodes import node_description
    from tessera.fakenvml.description import load_description, parse_description

    try:
        described = (load_description(nvml_description) if nvml_description
                     else parse_description(node_description(spec), source=f"node {spec.name}"))
    except ValueError:
        return ""
    return nvidia_smi_script(described)


def _interrupt_response(resp: Any) -> None:
    """Unblock a thread reading a watch stream: shut its socket down (close() alone does not wake it)."""
    if resp is None:
        return
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        resp.close()
    except OSError:
        pass
