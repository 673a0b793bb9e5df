"""The extender's API server calls, through the ``kubernetes`` client, on plain dicts (raw JSON in and
out, so no model conversion on the bind path): list and watch nodes and pods, patch a pod's
annotations, POST a Binding, read and write the leader Lease."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT_S = 10


class Gone(Exception):
    """A watch's resourceVersion is too old: list again."""


def api_client(kubeconfig: str) -> kubernetes.client.ApiClient:
    """An ApiClient from a kubeconfig file, else the in-cluster config (raises ConfigException)."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        raise kubernetes.config.ConfigException("no kubeconfig given and not running in a cluster")
    configuration.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(configuration)


def error_text(exc: BaseException) -> str:
    """One line saying why an API call failed (the Status message when there is one)."""
    if isinstance(exc, ApiException):
        try:
            return f"{exc.status}: {json.loads(exc.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{exc.status}: {exc.reason}"
    return str(exc) or type(exc).__name__


class KubeApi:
    """What the extender asks of the API server."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, path_params: dict, body: dict, content_type: str) -> dict:
        """One call on the bind path, without the generated methods' per-call model validation."""
        method, url, headers, data, post = self.client.param_serialize(
            method, path, path_params=path_params, header_params={"Content-Type": content_type,
                                                                  "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])
        resp = self.client.call_api(method, url, headers, data, post, _request_timeout=TIMEOUT_S)
        raw = resp.read()
        if resp.status >= 400:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = raw
            raise exc
        return json.loads(raw) if raw else {}

    # -- lists and watches -----------------------------------------------------------------------

    def list(self, kind: str) -> tuple[list[dict], str]:
        """All ``nodes`` or ``pods``: the items and the list's resourceVersion."""
        call = self.core.list_node if kind == "nodes" else self.core.list_pod_for_all_namespaces
        doc = json.loads(call(_preload_content=False, _request_timeout=60).data)
        return doc.get("items") or [], doc["metadata"]["resourceVersion"]

    def watch(self, kind: str, resource_version: str, on_response: Callable[[Any], None],
              timeout_s: int = 300) -> Iterator[dict]:
        """Events of ``nodes`` or ``pods`` since ``resource_version``; raises Gone on 410."""
        call = self.core.list_node if kind == "nodes" else self.core.list_pod_for_all_namespaces
        resp = call(watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
                    timeout_seconds=timeout_s, _preload_content=False)
        on_response(resp)
        try:
            for line in iter_resp_lines(resp):
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise Gone(status.get("message", "too old resource version"))
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                yield event
        finally:
            resp.close()
            resp.release_conn()

    # -- pods ------------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict:
        return json.loads(self.core.read_namespaced_pod(name, namespace, _preload_content=False,
                                                        _request_timeout=TIMEOUT_S).data)

    def patch_pod_annotations(self, namespace: str, name: str, annotations: dict[str, str | None],
                              resource_version: str = "") -> dict:
        """Merge-patch annotations (None removes one); with ``resource_version`` only if unchanged."""
        meta: dict[str, Any] = {"annotations": annotations}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return self._send("PATCH", "/api/v1/namespaces/{namespace}/pods/{name}",
                          {"namespace": namespace, "name": name}, {"metadata": meta}, MERGE_PATCH)

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """POST pods/binding."""
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self._send("POST", "/api/v1/namespaces/{namespace}/pods/{name}/binding",
                   {"namespace": namespace, "name": name}, body, "application/json")

    # -- leases ----------------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict | None:
        try:
            return json.loads(self.coordination.read_namespaced_lease(name, namespace, _preload_content=False,
                                                                      _request_timeout=TIMEOUT_S).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_lease(self, namespace: str, lease: dict) -> dict:
        return json.loads(self.coordination.create_namespaced_lease(namespace, lease, _preload_content=False,
                                                                    _request_timeout=TIMEOUT_S).data)

    def replace_lease(self, namespace: str, lease: dict) -> dict:
        """PUT the lease; the API server refuses it (409) if its resourceVersion is stale."""
        return json.loads(self.coordination.replace_namespaced_lease(
            lease["metadata"]["name"], namespace, lease, _preload_content=False, _request_timeout=TIMEOUT_S).data)
