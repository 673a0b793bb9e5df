"""Kubernetes Events on pods, through the API server: how a user learns from ``kubectl describe pod``.

:func:`event_sink` picks the sink: the API server named by a kubeconfig file, the in-cluster
service account where the exporter runs in a pod, or none (events are logged and skipped) where
neither is configured.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Protocol

from tessera.kube import pod_event
from tessera.log import get_logger

__all__ = ["EventSink", "KubeEvents", "NoEvents", "PodEvent", "RecordedEvents", "event_sink", "kube_client"]

log = get_logger("exporter")
COMPONENT = "tessera-exporter"


@dataclass(frozen=True)
class PodEvent:
    """One Event about one pod."""

    namespace: str
    pod: str
    pod_uid: str
    reason: str
    message: str
    type: str = "Warning"


class EventSink(Protocol):
    """Where pod events go; ``emit`` raises on failure so the caller can try again later."""

    def emit(self, event: PodEvent) -> None: ...


class NoEvents:
    """No API server configured: events are logged only."""

    def emit(self, event: PodEvent) -> None:
        log.info("pod_event_not_sent", reason=event.reason, namespace=event.namespace, pod=event.pod,
                 message=event.message, why="no API server configured")


class RecordedEvents:
    """Keeps events in memory (tests, dry runs)."""

    def __init__(self) -> None:
        self.events: list[PodEvent] = []

    def emit(self, event: PodEvent) -> None:
        self.events.append(event)


class KubeEvents:
    """Creates core/v1 Events through the ``kubernetes`` client."""

    def __init__(self, api_client, node_name: str) -> None:
        import kubernetes

        self._core = kubernetes.client.CoreV1Api(api_client)
        self.node_name = node_name

    def emit(self, event: PodEvent) -> None:
        body = pod_event(event.namespace, event.pod, event.pod_uid, event.type, event.reason, event.message,
                         COMPONENT, self.node_name)
        self._core.create_namespaced_event(event.namespace, body, _preload_content=False)


def kube_client(kubeconfig: str):
    """An ``ApiClient`` from a kubeconfig file, else the in-cluster config, else None (no API configured)."""
    import kubernetes

    if kubeconfig:
        return kubernetes.config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)
    return None


def event_sink(api_client, node_name: str | None = None) -> EventSink:
    """Events through ``api_client``, or :class:`NoEvents` when it is None."""
    if api_client is None:
        log.info("pod_events_disabled", why="no kubeconfig and not running in a cluster")
        return NoEvents()
    return KubeEvents(api_client, node_name or socket.gethostname())
