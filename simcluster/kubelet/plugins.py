"""The kubelet's registry of device plugins: Registration, each plugin's device list and health.

- A plugin registers on ``kubelet.sock``; the registry dials the plugin's endpoint at once, asks for
  its options and consumes ListAndWatch; a plugin that registers again for the same resource
  replaces the old endpoint.
- Capacity counts every device a plugin lists, allocatable only the ``Healthy`` ones.
- When a ListAndWatch stream ends, every device of that resource turns unhealthy at once
  (allocatable drops, capacity stays) and the resource is dropped after ``removal_grace_s``
  (the kubelet's ``endpointStopGracePeriod`` is 5 minutes) unless the plugin registers again.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from simcluster.kubelet.endpoint import DIAL_TIMEOUT_S, PluginEndpoint, grpc_error_text
from tessera.kubeletapi import API_VERSION, HEALTHY, UNHEALTHY
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api
from tessera.log import get_logger

log = get_logger("simkubelet")

_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_extended_resource_name(name: str) -> bool:
    """The kubelet's rule for a device-plugin resource name (``v1helper.IsExtendedResourceName``)."""
    if "/" not in name or name.startswith("requests."):
        return False
    prefix, _, short = name.partition("/")
    if prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io"):
        return False
    return (
        len(prefix) <= 253
        and bool(_DNS_SUBDOMAIN.match(prefix))
        and len(short) <= 63
        and bool(_QUALIFIED_NAME.match(short))
    )


@dataclass
class _Resource:
    """What the registry knows of one resource."""

    devices: dict[str, api.Device] | None = None  # None until the first ListAndWatch answer
    endpoint: PluginEndpoint | None = None
    stopped_at: float | None = None
    expiry: threading.Timer | None = field(default=None, repr=False)


class PluginRegistry:
    """Registered plugins and their devices; ``on_change()`` runs after every change, no lock held."""

    def __init__(
        self,
        plugin_dir: str,
        on_change: Callable[[], None],
        *,
        removal_grace_s: float = 30.0,
        dial_timeout_s: float = DIAL_TIMEOUT_S,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.removal_grace_s = removal_grace_s
        self.dial_timeout_s = dial_timeout_s
        self._on_change = on_change
        self._lock = threading.RLock()
        self._resources: dict[str, _Resource] = {}
        self._generation = 0  # bumped by forget_all(): a Register begun before it is dropped

    # --- Registration ---------------------------------------------------------------------

    def servicer(self) -> deviceplugin_grpc.RegistrationServicer:
        """The Registration service to put on ``kubelet.sock``."""
        return _RegistrationServicer(self)

    def register(self, request: api.RegisterRequest, context: grpc.ServicerContext) -> api.Empty:
        """Handle one RegisterRequest: validate, dial the plugin, read its options, watch its devices."""
        resource = request.resource_name
        if request.version != API_VERSION:
            self._reject(context, resource, grpc.StatusCode.INVALID_ARGUMENT,
                         f"requested device plugin version {request.version} is not supported. "
                         f"Supported versions are [{API_VERSION}]")
        if not is_extended_resource_name(resource):
            self._reject(context, resource, grpc.StatusCode.INVALID_ARGUMENT,
                         f"the ResourceName {resource!r} is invalid")
        with self._lock:
            generation = self._generation
        endpoint = PluginEndpoint(resource, os.path.join(self.plugin_dir, request.endpoint),
                                  self._on_devices, self._on_stopped, dial_timeout_s=self.dial_timeout_s)
        try:
            endpoint.connect()
        except ConnectionError as err:
            self._reject(context, resource, grpc.StatusCode.UNAVAILABLE, str(err))
        except grpc.RpcError as err:
            self._reject(context, resource, grpc.StatusCode.UNKNOWN,
                         f"failed to get device plugin options: {grpc_error_text(err)}")
        with self._lock:
            if generation != self._generation:
                endpoint.close()
                self._reject(context, resource, grpc.StatusCode.UNAVAILABLE, "kubelet is restarting")
            res = self._resources.setdefault(resource, _Resource())
            old, res.endpoint = res.endpoint, endpoint
            res.stopped_at = None
            if res.expiry is not None:
                res.expiry.cancel()
                res.expiry = None
        if old is not None:
            old.close()
        endpoint.watch()
        log.info("plugin_registered", resource=resource, endpoint=request.endpoint, replaced=old is not None,
                 preferred_allocation=endpoint.options.get_preferred_allocation_available)
        return api.Empty()

    @staticmethod
    def _reject(context: grpc.ServicerContext, resource: str, code: grpc.StatusCode, message: str) -> None:
        log.warning("plugin_registration_rejected", resource=resource, reason=message)
        context.abort(code, message)

    # --- device updates -------------------------------------------------------------------

    def _on_devices(self, endpoint: PluginEndpoint, devices: list[api.Device]) -> None:
        with self._lock:
            res = self._resources.get(endpoint.resource)
            if res is None or res.endpoint is not endpoint:
                return
            res.devices = {d.ID: d for d in devices}
        log.info("plugin_devices_updated", resource=endpoint.resource, devices=len(devices),
                 healthy=sum(1 for d in devices if d.health == HEALTHY))
        self._on_change()

    def _on_stopped(self, endpoint: PluginEndpoint) -> None:
        with self._lock:
            res = self._resources.get(endpoint.resource)
            if res is None or res.endpoint is not endpoint:
                return
            for device_id, device in list((res.devices or {}).items()):
                sick = api.Device()
                sick.CopyFrom(device)
                sick.health = UNHEALTHY
                res.devices[device_id] = sick
            res.stopped_at = time.monotonic()
            self._arm_expiry(endpoint.resource, res)
        log.warning("plugin_disconnected", resource=endpoint.resource, removal_grace_s=self.removal_grace_s)
        self._on_change()

    def _arm_expiry(self, resource: str, res: _Resource) -> None:
        timer = threading.Timer(self.removal_grace_s, self._expire, args=(resource, res))
        timer.daemon = True
        res.expiry = timer
        timer.start()

    def _expire(self, resource: str, res: _Resource) -> None:
        with self._lock:
            if self._resources.get(resource) is not res or res.stopped_at is None:
                return
            del self._resources[resource]
        log.info("resource_removed", resource=resource, removal_grace_s=self.removal_grace_s)
        self._on_change()

    # --- restarts -------------------------------------------------------------------------

    def forget_all(self) -> None:
        """Disconnect every plugin and forget every resource (a kubelet process ending)."""
        with self._lock:
            self._generation += 1
            resources, self._resources = self._resources, {}
        for res in resources.values():
            if res.expiry is not None:
                res.expiry.cancel()
            if res.endpoint is not None:
                res.endpoint.close()

    def restore(self, resources: list[str]) -> None:
        """Show checkpointed resources with no devices and a stopped plugin, as the kubelet does at start."""
        now = time.monotonic()
        with self._lock:
            for resource in resources:
                if resource not in self._resources:
                    res = _Resource(devices={}, stopped_at=now)
                    self._resources[resource] = res
                    self._arm_expiry(resource, res)

    # --- reading --------------------------------------------------------------------------

    def capacity(self) -> dict[str, int]:
        """Devices per resource, healthy or not."""
        with self._lock:
            return {name: len(r.devices) for name, r in self._resources.items() if r.devices is not None}

    def allocatable(self) -> dict[str, int]:
        """Healthy devices per resource."""
        with self._lock:
            return {name: sum(1 for d in r.devices.values() if d.health == HEALTHY)
                    for name, r in self._resources.items() if r.devices is not None}

    def devices(self, resource: str) -> dict[str, api.Device] | None:
        """The resource's devices by ID (copies), or None when the resource is unknown."""
        with self._lock:
            res = self._resources.get(resource)
            if res is None or res.devices is None:
                return None
            return {i: _copy(d) for i, d in res.devices.items()}

    def live_endpoint(self, resource: str) -> PluginEndpoint | None:
        """The plugin serving ``resource``, unless it is gone or stopped."""
        with self._lock:
            res = self._resources.get(resource)
            return res.endpoint if res is not None and res.stopped_at is None else None

    def healthy_ids(self) -> dict[str, list[str]]:
        """Resource -> sorted healthy device IDs (the checkpoint's RegisteredDevices)."""
        with self._lock:
            return {name: sorted(i for i, d in r.devices.items() if d.health == HEALTHY)
                    for name, r in self._resources.items() if r.devices is not None}


def _copy(device: api.Device) -> api.Device:
    copy = api.Device()
    copy.CopyFrom(device)
    return copy


class _RegistrationServicer(deviceplugin_grpc.RegistrationServicer):
    """The kubelet's Registration service, handing each request to the registry."""

    def __init__(self, registry: PluginRegistry) -> None:
        self._registry = registry

    def Register(self, request: api.RegisterRequest, context: grpc.ServicerContext) -> api.Empty:  # noqa: N802
        return self._registry.register(request, context)
