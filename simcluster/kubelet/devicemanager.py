"""The simulated kubelet's device manager: plugins, admission-time allocation, checkpoint, restarts.

It does what the kubelet's ``pkg/kubelet/cm/devicemanager`` does, quirks included (the plugin side
is in :mod:`simcluster.kubelet.plugins`):

- pods are admitted one at a time; a container that already holds devices of a resource gets its
  stored Allocate response back without a plugin call; otherwise the available devices are the
  healthy ones no other container holds, GetPreferredAllocation (when the plugin offers it) picks
  first, the rest is filled from the available ones, then Allocate;
- every allocation and release, and every device-list change, is written to the checkpoint;
- at start (and :meth:`DeviceManager.restart`) the checkpoint is read back, each resource in it
  shows capacity 0 until its plugin registers again, every unix socket in the plugin directory is
  removed (the kubelet's ``cleanupPluginDirectory``: plugins must recreate their own socket), and
  ``kubelet.sock`` is served anew.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable

import grpc

from simcluster.kubelet.checkpoint import (
    NO_TOPOLOGY_NUMA_NODE,
    CheckpointError,
    ContainerAllocation,
    read_checkpoint,
    write_checkpoint,
)
from simcluster.kubelet.endpoint import DIAL_TIMEOUT_S, PluginEndpoint, grpc_error_text
from simcluster.kubelet.plugins import PluginRegistry, is_extended_resource_name
from simcluster.kubelet.podresources import ActivePods, PodResourcesServer
from simcluster.kubelet.sockets import remove_socket, serve_unix, stop_server
from tessera.kubeletapi import HEALTHY, KUBELET_SOCKET_NAME
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api
from tessera.log import get_logger

log = get_logger("simkubelet")

__all__ = ["AdmissionError", "DeviceManager", "ResourcesCallback", "is_extended_resource_name"]

ResourcesCallback = Callable[[dict[str, int], dict[str, int]], None]


class AdmissionError(Exception):
    """The kubelet refused a container at admission: the pod fails with ``reason``.

    ``message`` is what ``kubectl describe pod`` shows, worded as the kubelet words it;
    ``cause`` is the underlying error (a plugin's gRPC error included verbatim).
    """

    reason = "UnexpectedAdmissionError"

    def __init__(self, cause: str) -> None:
        self.cause = cause
        self.message = f"Allocate failed due to {cause}, which is unexpected"
        super().__init__(self.message)


class DeviceManager:
    """The kubelet's device manager over real unix sockets, without an API server.

    ``on_resources_changed(capacity, allocatable)`` runs (from whichever thread saw the change,
    no lock of the manager held) each time either map changes; a resource missing from both maps
    was removed (the kubelet then writes 0 for it in the Node status). With
    ``pod_resources_socket`` the pod-resources API v1 is served there too; ``active_pods``
    (returning API pod dicts) lets it list pods that hold no devices, as the kubelet does.
    Call :meth:`start` (or use ``with``) to begin serving.
    """

    def __init__(
        self,
        plugin_dir: str,
        checkpoint_path: str,
        on_resources_changed: ResourcesCallback | None = None,
        *,
        pod_resources_socket: str | None = None,
        active_pods: ActivePods | None = None,
        removal_grace_s: float = 30.0,
        dial_timeout_s: float = DIAL_TIMEOUT_S,
        clean_plugin_dir: bool = True,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.checkpoint_path = checkpoint_path
        self.socket_path = os.path.join(plugin_dir, KUBELET_SOCKET_NAME)
        self.clean_plugin_dir = clean_plugin_dir
        self.plugins = PluginRegistry(plugin_dir, self._plugins_changed,
                                      removal_grace_s=removal_grace_s, dial_timeout_s=dial_timeout_s)
        self._callback = on_resources_changed
        self._lock = threading.Lock()  # allocations and pod names
        self._admit_lock = threading.Lock()  # one admission, start, stop or restart at a time
        self._notify_lock = threading.Lock()  # callbacks in order, each with the latest state
        self._allocations: list[ContainerAllocation] = []
        self._pod_names: dict[str, tuple[str, str]] = {}  # uid -> (name, namespace), memory only
        self._last_notified: tuple[dict[str, int], dict[str, int]] | None = None
        self._server: grpc.Server | None = None
        # False while stopping or restarting: a device update that was on its way when the registry was
        # cleared must not write that empty registry over the checkpoint the restart is about to read.
        self._checkpointing = False
        self._pod_resources = (
            PodResourcesServer(self, pod_resources_socket, active_pods) if pod_resources_socket else None
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> DeviceManager:
        """Read the checkpoint, clean the plugin directory, serve Registration (and pod resources)."""
        with self._admit_lock:
            self._start_locked()
        return self

    def stop(self) -> None:
        """Stop serving, disconnect every plugin, remove the sockets this manager served."""
        with self._admit_lock:
            self._stop_locked()
        log.info("device_manager_stopped", socket=self.socket_path)

    def restart(self) -> None:
        """Do what a kubelet restart does to the device manager.

        ``kubelet.sock`` disappears and every plugin is forgotten; the checkpoint is read again, so
        each resource in it shows capacity 0 (the callback fires) until its plugin registers
        again; the plugin directory's sockets are removed; a fresh ``kubelet.sock`` is served.
        Plugins notice the new socket and register by themselves.
        """
        with self._admit_lock:
            self._stop_locked()
            self._start_locked()
        log.info("kubelet_restarted", socket=self.socket_path)

    def __enter__(self) -> DeviceManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_locked(self) -> None:
        os.makedirs(self.plugin_dir, exist_ok=True)
        self._load_checkpoint()
        with self._lock:
            self._checkpointing = True
        self._notify()
        if self.clean_plugin_dir:
            self._remove_plugin_sockets()
        servicer = self.plugins.servicer()
        self._server = serve_unix(
            self.socket_path, lambda s: deviceplugin_grpc.add_RegistrationServicer_to_server(servicer, s)
        )
        if self._pod_resources is not None:
            self._pod_resources.start()
        log.info("registration_serving", socket=self.socket_path)

    def _stop_locked(self) -> None:
        with self._lock:
            self._checkpointing = False
        if self._pod_resources is not None:
            self._pod_resources.stop()
        if self._server is not None:
            stop_server(self._server, self.socket_path)
            self._server = None
        remove_socket(self.socket_path)
        self.plugins.forget_all()
        with self._lock:
            self._allocations = []

    def _remove_plugin_sockets(self) -> None:
        for name in os.listdir(self.plugin_dir):
            path = os.path.join(self.plugin_dir, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
                    log.info("stale_socket_removed", path=path)
            except FileNotFoundError:
                continue

    def _load_checkpoint(self) -> None:
        try:
            allocations, registered = read_checkpoint(self.checkpoint_path)
        except (CheckpointError, OSError) as err:
            # The kubelet goes on without it: "Device allocation info may NOT be up-to-date".
            log.warning("checkpoint_unreadable", path=self.checkpoint_path, error=str(err))
            allocations, registered = [], {}
        with self._lock:
            for allocation in allocations:
                allocation.pod_name, allocation.pod_namespace = self._pod_names.get(allocation.pod_uid, ("", ""))
            self._allocations = allocations
        self.plugins.restore(sorted(registered))
        log.info("checkpoint_loaded", path=self.checkpoint_path, allocations=len(allocations),
                 resources=sorted(registered))

    # --- state the node reports -----------------------------------------------------------

    def capacity(self) -> dict[str, int]:
        """Devices per resource, healthy or not (the Node's ``status.capacity``)."""
        return self.plugins.capacity()

    def allocatable(self) -> dict[str, int]:
        """Healthy devices per resource (the Node's ``status.allocatable``)."""
        return self.plugins.allocatable()

    def devices(self, resource: str) -> dict[str, str]:
        """Device ID -> health for one resource (empty when unknown)."""
        return {i: d.health for i, d in (self.plugins.devices(resource) or {}).items()}

    def healthy_devices(self) -> dict[str, dict[str, list[int]]]:
        """Resource -> healthy device ID -> its NUMA node IDs (empty list: no topology)."""
        result = {}
        for resource in self.capacity():
            devices = self.plugins.devices(resource) or {}
            healthy = {i: [n.ID for n in d.topology.nodes] for i, d in devices.items() if d.health == HEALTHY}
            if healthy:
                result[resource] = healthy
        return result

    def allocations(self) -> list[ContainerAllocation]:
        """Every container's allocation, in admission order (copies)."""
        with self._lock:
            return [
                ContainerAllocation(a.pod_uid, a.container_name, a.resource,
                                    {k: list(v) for k, v in a.device_ids_by_numa.items()},
                                    a.response, a.pod_name, a.pod_namespace)
                for a in self._allocations
            ]

    def _plugins_changed(self) -> None:
        self._write_checkpoint()
        self._notify()

    def _notify(self) -> None:
        if self._callback is None:
            return
        with self._notify_lock:
            state = (self.capacity(), self.allocatable())
            if state == self._last_notified:
                return
            self._last_notified = state
            try:
                self._callback(*state)
            except Exception:  # noqa: BLE001 - a caller's bug must not kill a stream thread
                log.exception("resources_callback_failed")

    def _write_checkpoint(self) -> None:
        with self._lock:
            if self._checkpointing:
                write_checkpoint(self.checkpoint_path, list(self._allocations), self.plugins.healthy_ids())

    # --- admission ------------------------------------------------------------------------

    def allocate(
        self, pod_uid: str, pod_name: str, pod_namespace: str, container_name: str, resource: str, count: int
    ) -> api.ContainerAllocateResponse:
        """Give ``count`` devices of ``resource`` to one container, as the kubelet does at admission.

        Returns the plugin's ContainerAllocateResponse. Raises :class:`AdmissionError` on any
        failure: no plugin for the resource, too few available devices, a plugin error (its
        message kept), or a changed request for a container that already holds devices.
        """
        with self._admit_lock:
            with self._lock:
                existing = self._find(pod_uid, container_name, resource)
                if existing is not None:
                    if len(existing.device_ids) != count:
                        raise self._refuse(resource, pod_uid,
                                           f'pod "{pod_uid}" container "{container_name}" changed request for '
                                           f'resource "{resource}" from {len(existing.device_ids)} to {count}')
                    return api.ContainerAllocateResponse.FromString(existing.response)
                in_use = {d for a in self._allocations if a.resource == resource for d in a.device_ids}
            if count <= 0:
                return api.ContainerAllocateResponse()
            devices = self.plugins.devices(resource)
            if devices is None:
                raise self._refuse(resource, pod_uid, f"cannot allocate unregistered device {resource}")
            available = sorted(i for i, d in devices.items() if d.health == HEALTHY and i not in in_use)
            if len(available) < count:
                raise self._refuse(resource, pod_uid,
                                   f"requested number of devices unavailable for {resource}. "
                                   f"Requested: {count}, Available: {len(available)}")
            endpoint = self.plugins.live_endpoint(resource)
            if endpoint is None:
                raise self._refuse(resource, pod_uid, f"unknown Device Plugin {resource}")
            chosen = self._choose(endpoint, available, count, pod_uid)
            try:
                response = endpoint.allocate(chosen)
            except grpc.RpcError as err:
                raise self._refuse(resource, pod_uid, grpc_error_text(err)) from err
            if not response.container_responses:
                raise self._refuse(resource, pod_uid, f"no containers return in allocation response {response}")
            answer = response.container_responses[0]
            by_numa: dict[int, list[str]] = {}
            for device_id in chosen:
                nodes = [n.ID for n in devices[device_id].topology.nodes] or [NO_TOPOLOGY_NUMA_NODE]
                for numa in nodes:
                    by_numa.setdefault(numa, []).append(device_id)
            with self._lock:
                self._pod_names[pod_uid] = (pod_name, pod_namespace)
                self._allocations.append(ContainerAllocation(pod_uid, container_name, resource, by_numa,
                                                             answer.SerializeToString(), pod_name, pod_namespace))
            self._write_checkpoint()
            log.info("devices_allocated", pod_uid=pod_uid, pod=f"{pod_namespace}/{pod_name}",
                     container=container_name, resource=resource, devices=chosen)
            return answer

    def _choose(self, endpoint: PluginEndpoint, available: list[str], count: int, pod_uid: str) -> list[str]:
        """The plugin's preferred IDs that are available, then the rest from ``available`` in order."""
        chosen: list[str] = []
        if endpoint.options.get_preferred_allocation_available:
            try:
                preferred = endpoint.preferred_allocation(available, [], count)
            except grpc.RpcError as err:
                raise self._refuse(endpoint.resource, pod_uid,
                                   f"device plugin GetPreferredAllocation rpc failed with err: "
                                   f"{grpc_error_text(err)}") from err
            allowed = set(available)
            for device_id in preferred:
                if device_id in allowed and device_id not in chosen and len(chosen) < count:
                    chosen.append(device_id)
        chosen += [d for d in available if d not in chosen][: count - len(chosen)]
        return chosen

    @staticmethod
    def _refuse(resource: str, pod_uid: str, cause: str) -> AdmissionError:
        log.warning("allocation_failed", resource=resource, pod_uid=pod_uid, cause=cause)
        return AdmissionError(cause)

    def _find(self, pod_uid: str, container_name: str, resource: str) -> ContainerAllocation | None:
        for allocation in self._allocations:
            if (allocation.pod_uid, allocation.container_name, allocation.resource) == (pod_uid, container_name, resource):
                return allocation
        return None

    def release_pod(self, pod_uid: str) -> list[str]:
        """Free every device a pod holds (it ended or was deleted); returns the freed device IDs."""
        with self._lock:
            freed = [d for a in self._allocations if a.pod_uid == pod_uid for d in a.device_ids]
            kept = [a for a in self._allocations if a.pod_uid != pod_uid]
            changed = len(kept) != len(self._allocations)
            self._allocations = kept
            self._pod_names.pop(pod_uid, None)
        if changed:
            self._write_checkpoint()
            log.info("pod_released", pod_uid=pod_uid, devices=freed)
        return freed
