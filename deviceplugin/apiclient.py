"""The plugin's API server calls, through the ``kubernetes`` client, on plain dicts.

Never on the kubelet's admission path: the pod watch, the ledger worker and the inventory writer
use it from their own threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes

from tessera import LABEL_GPU_MODE
from tessera.kube import client_configuration, watch_events
from tessera.log import get_logger

log = get_logger("deviceplugin")
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT_S = 5


class NodeApi:
    """This node and the pods bound to it."""

    def __init__(self, client: kubernetes.client.ApiClient, node: str) -> None:
        self._client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.node = node

    def close(self) -> None:
        self._client.close()

    def for_node(self, node: str) -> "NodeApi":
        """The same connection, for another Node."""
        return NodeApi(self._client, node)

    def node_names(self) -> list[str]:
        """Every Node's name (needs ``list`` on nodes: an admin's credentials, not the plugin's own)."""
        doc = json.loads(self.core.list_node(_preload_content=False, _request_timeout=TIMEOUT_S).data)
        return [n["metadata"]["name"] for n in doc.get("items", [])]

    def get_node(self) -> dict | None:
        try:
            resp = self.core.read_node(self.node, _preload_content=False, _request_timeout=TIMEOUT_S)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def node_or_none(self) -> dict | None:
        """The Node, or None when it does not exist or the API cannot be reached (logged)."""
        try:
            return self.get_node()
        except Exception as exc:  # noqa: BLE001 - start without it; the node watch catches up
            log.warning("node_read_failed", node=self.node, reason=str(exc))
            return None

    def mode_label(self) -> str | None:
        """The node's ``tessera.io/gpu-mode`` label, or None (also when the API cannot be reached)."""
        return mode_label_of(self.node_or_none())

    def patch_node_metadata(self, labels: dict[str, str], annotations: dict[str, str | None]) -> None:
        """Merge labels and annotations into the Node (a None value removes that annotation)."""
        body = {"metadata": {"labels": labels, "annotations": annotations}}
        self.core.patch_node(self.node, body, _content_type=MERGE_PATCH, _preload_content=False,
                             _request_timeout=TIMEOUT_S)

    def patch_pod_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}},
                                       _content_type=MERGE_PATCH, _preload_content=False,
                                       _request_timeout=TIMEOUT_S)

    def evict_pod(self, namespace: str, name: str, uid: str) -> None:
        """POST a policy/v1 Eviction for the pod (graceful, PodDisruptionBudgets respected by the server)."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": {"preconditions": {"uid": uid}} if uid else {}}
        self.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False,
                                                 _request_timeout=TIMEOUT_S)

    def list_pods(self) -> tuple[list[dict], str]:
        doc = json.loads(self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}", _preload_content=False, _request_timeout=TIMEOUT_S).data)
        return doc.get("items", []), doc["metadata"]["resourceVersion"]

    def watch(self, kind: str, resource_version: str, on_response: Callable[[Any], None],
              timeout_s: int = 60) -> Iterator[dict]:
        """Watch events of this node's pods (``kind="pods"``) or of the Node itself (``"node"``)."""
        if kind == "pods":
            resp = self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node}", watch=True, resource_version=resource_version,
                allow_watch_bookmarks=True, timeout_seconds=timeout_s, _preload_content=False)
        else:
            resp = self.core.list_node(field_selector=f"metadata.name={self.node}", watch=True,
                                       resource_version=resource_version, timeout_seconds=timeout_s,
                                       _preload_content=False)
        on_response(resp)
        yield from watch_events(resp)


def mode_label_of(node: dict | None) -> str | None:
    """A Node's ``tessera.io/gpu-mode`` label, or None."""
    return (((node or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_GPU_MODE)


def connect(kubeconfig: str, node: str) -> NodeApi | None:
    """A NodeApi from ``kubeconfig``, or the in-cluster config; None when neither is there."""
    try:
        configuration = client_configuration(kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as err:
        log.error("api_server_config_failed", kubeconfig=kubeconfig or "in-cluster", reason=str(err))
        return None
    if configuration is None:
        log.warning("api_server_not_configured",
                    effect="no node inventory, labels, assignments or ledger; kubelet-only mode")
        return None
    node = node or os.environ.get("NODE_NAME", "") or os.uname().nodename
    return NodeApi(kubernetes.client.ApiClient(configuration), node)
