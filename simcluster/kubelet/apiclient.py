"""The simulated kubelet's view of the API server, through the real ``kubernetes`` client.

Objects travel as plain dicts (``_preload_content=False``): the kubelet reads and writes the wire
format, as the real one does, without the client's model classes in the way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes

from tessera.kube import now_rfc3339, pod_event, watch_events

MERGE_PATCH = "application/merge-patch+json"
NODE_LEASE_NAMESPACE = "kube-node-lease"


class KubeletApi:
    """The handful of API calls a kubelet makes: its Node, the pods bound to it, their status, events."""

    def __init__(self, api: str | kubernetes.client.Configuration, node_name: str) -> None:
        """``api``: the API server's URL (the embedded one, which needs no credentials), or a client
        configuration carrying the node's credentials (a real API server: ``system:node:<name>``)."""
        if isinstance(api, kubernetes.client.Configuration):
            configuration = api
        else:
            configuration = kubernetes.client.Configuration()
            configuration.host = api
        self._client = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self._client)
        self.coordination = kubernetes.client.CoordinationV1Api(self._client)
        self.node_name = node_name

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _json(resp) -> Any:
        return json.loads(resp.data)

    def get_node(self) -> dict | None:
        try:
            return self._json(self.core.read_node(self.node_name, _preload_content=False))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_node(self, body: dict) -> dict:
        return self._json(self.core.create_node(body, _preload_content=False))

    def patch_node(self, patch: dict) -> dict:
        return self._json(self.core.patch_node(self.node_name, patch, _content_type=MERGE_PATCH,
                                               _preload_content=False))

    def patch_node_status(self, patch: dict) -> dict:
        return self._json(self.core.patch_node_status(self.node_name, patch, _content_type=MERGE_PATCH,
                                                      _preload_content=False))

    def renew_lease(self, duration_s: int) -> None:
        """Create or renew the node's heartbeat Lease (kube-node-lease/<node>), as the kubelet does
        every ``duration_s / 4``; the node lifecycle controller reads its renewTime."""
        now = now_rfc3339(micro=True)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": duration_s, "renewTime": now}}
        try:
            self.coordination.patch_namespaced_lease(self.node_name, NODE_LEASE_NAMESPACE,
                                                     {"spec": body["spec"]}, _content_type=MERGE_PATCH,
                                                     _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease(NODE_LEASE_NAMESPACE, body, _preload_content=False)

    def list_pods(self) -> tuple[list[dict], str]:
        doc = self._json(self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", _preload_content=False))
        return doc.get("items", []), doc["metadata"]["resourceVersion"]

    def watch_pods(self, resource_version: str, timeout_s: int,
                   on_response: Callable[[Any], None] | None = None) -> Iterator[dict]:
        """Watch events for pods on this node; raises ``WatchExpired`` when the version is too old."""
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=timeout_s, _preload_content=False)
        if on_response:
            on_response(resp)
        yield from watch_events(resp)

    def patch_pod_status(self, namespace: str, name: str, status: dict) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status}, _content_type=MERGE_PATCH,
                                              _preload_content=False)

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's confirmation of a graceful deletion: delete with grace 0, preconditioned on the UID."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def post_event(self, pod: dict, event_type: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        namespace = meta.get("namespace", "default")
        body = pod_event(namespace, meta["name"], meta["uid"], event_type, reason, message, "kubelet", self.node_name)
        self.core.create_namespaced_event(namespace, body, _preload_content=False)
