"""The kubelet's pod-resources API: the truth of which container holds which device IDs."""

from __future__ import annotations

import threading

import grpc

from deviceplugin.rm import NodeDevices
from tessera.kubeletapi import podresources_grpc, podresources_pb2 as api
from tessera.log import get_logger

log = get_logger("deviceplugin")

Holding = tuple[str, str, str, tuple[str, ...]]  # (pod UID, container, resource, IDs)


class PodResourcesClient:
    """List calls on the pod-resources socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._channel: grpc.Channel | None = None
        self._names: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid, when the API told us

    def _stub(self) -> podresources_grpc.PodResourcesListerStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix://{self.socket_path}")
        return podresources_grpc.PodResourcesListerStub(self._channel)

    def list(self, timeout_s: float = 2.0) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
        """(namespace, pod name, container, resource, IDs) for every device holding."""
        response = self._stub().List(api.ListPodResourcesRequest(), timeout=timeout_s)
        rows: dict[tuple[str, str, str, str], list[str]] = {}
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    key = (pod.namespace, pod.name, container.name, devices.resource_name)
                    rows.setdefault(key, []).extend(devices.device_ids)
        return [(*k, tuple(v)) for k, v in rows.items()]

    def holdings_or_none(self, uid_of=None) -> list[Holding] | None:
        """Holdings keyed by pod UID where ``uid_of(namespace, name)`` knows it (else namespace/name)."""
        try:
            rows = self.list()
        except grpc.RpcError as err:
            log.warning("pod_resources_unavailable", socket=self.socket_path, reason=err.details() or str(err.code()))
            self.close()
            return None
        out = []
        for namespace, name, container, resource, ids in rows:
            uid = (uid_of(namespace, name) if uid_of else None) or f"{namespace}/{name}"
            out.append((uid, container, resource, ids))
        return out

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class PodResourcesSync:
    """Reads the pod-resources API every ``interval_s`` into the resource manager's holdings."""

    def __init__(self, client: PodResourcesClient, rm: NodeDevices, interval_s: float = 1.0,
                 uid_of=None) -> None:
        self.client, self.rm, self.interval_s, self.uid_of = client, rm, interval_s, uid_of
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dp-podresources", daemon=True)
        self.listeners: list = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.client.close()

    def poke(self) -> None:
        """Read again soon (after an Allocate)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            holdings = self.client.holdings_or_none(self.uid_of)
            if holdings is not None:
                self.rm.set_holdings(holdings)
                for listener in self.listeners:
                    listener(holdings)
            self._wake.wait(self.interval_s)
            self._wake.clear()
