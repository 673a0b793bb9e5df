"""The extender's API server calls, through the ``kubernetes`` client, on plain dicts (raw JSON in and
out, so no model conversion on the bind path): list and watch nodes and pods (and, for DRA scoring,
ResourceSlices, ResourceClaims and ResourceClaimTemplates), patch a pod's
annotations, POST a Binding, read and write the leader Lease."""

from __future__ import annotations

import functools
import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import kubernetes
import orjson
from kubernetes.client.rest import ApiException

from tessera.kube import client_configuration, watch_events

TIMEOUT_S = 10
DRA_GROUP, DRA_VERSION = "resource.k8s.io", "v1"
DRA_KINDS = ("resourceslices", "resourceclaims", "resourceclaimtemplates")


def api_client(kubeconfig: str) -> kubernetes.client.ApiClient:
    """An ApiClient from a kubeconfig file, else the in-cluster config (raises ConfigException)."""
    configuration = client_configuration(kubeconfig)
    if configuration is None:
        raise kubernetes.config.ConfigException("no kubeconfig given and not running in a cluster")
    configuration.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(configuration)


class _Direct:
    """The bind path's two writes over ``http.client``, one keep-alive connection per thread, with the
    client configuration's server, TLS files and credentials (read per call, so refreshed tokens are
    used). A third of the CPU of the generated client's serialise-and-urllib3 path, which stays in use
    where this does not apply (a proxy, a TLS server name or hostname override)."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        configuration = self.configuration = client.configuration
        self.default_headers = dict(client.default_headers)  # User-Agent and any the caller set
        parts = urlsplit(configuration.host)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._context = self._tls_context() if self.https else None

    @staticmethod
    def applies(configuration: kubernetes.client.Configuration) -> bool:
        return (not configuration.proxy and not configuration.tls_server_name
                and configuration.assert_hostname is None and urlsplit(configuration.host).scheme in ("http", "https"))

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.configuration
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
        if not cfg.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S, context=self._context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method: str, path: str, data: bytes | None, content_type: str) -> tuple[int, str, bytes]:
        """(status, reason, body) of one request; a keep-alive connection the server has closed is
        opened again once, as urllib3 retries connection errors."""
        headers = {**self.default_headers, "Content-Type": content_type, "Accept": "application/json"}
        for auth in self.configuration.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, data, headers)
                resp = conn.getresponse()
                return resp.status, resp.reason, resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")


class KubeApi:
    """What the extender asks of the API server."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)
        self.objects = kubernetes.client.CustomObjectsApi(client)
        config = client.configuration
        self._direct = _Direct(client) if _Direct.applies(config) else None

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, path_params: dict, body: dict | None, content_type: str) -> dict:
        """One call on the bind path, without the generated methods' per-call model validation."""
        if self._direct is not None:
            status, reason, raw = self._direct.request(
                method, path.format(**{k: quote(v, safe="") for k, v in path_params.items()}),
                orjson.dumps(body) if body is not None else None, content_type)
            if status >= 400:
                exc = ApiException(status=status, reason=reason)
                exc.body = raw
                raise exc
            return orjson.loads(raw) if raw else {}
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
        return orjson.loads(raw) if raw else {}

    # -- lists and watches -----------------------------------------------------------------------

    def _lister(self, kind: str) -> Callable[..., Any]:
        if kind == "nodes":
            return self.core.list_node
        if kind == "pods":
            return self.core.list_pod_for_all_namespaces
        if kind in DRA_KINDS:
            return functools.partial(self.objects.list_cluster_custom_object, DRA_GROUP, DRA_VERSION, kind)
        raise ValueError(f"no list of {kind!r}")

    def list(self, kind: str) -> tuple[list[dict], str]:
        """All ``nodes``, ``pods`` or objects of one of ``DRA_KINDS``: the items and the list's
        resourceVersion."""
        doc = orjson.loads(self._lister(kind)(_preload_content=False, _request_timeout=60).data)
        return doc.get("items") or [], doc["metadata"]["resourceVersion"]

    def watch(self, kind: str, resource_version: str, on_response: Callable[[Any], None],
              timeout_s: int = 300) -> Iterator[dict]:
        """Events of ``kind`` (as ``list``) since ``resource_version``; raises WatchExpired on 410 Gone."""
        resp = self._lister(kind)(watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
                    timeout_seconds=timeout_s, _preload_content=False)
        on_response(resp)
        return watch_events(resp)

    # -- pods ------------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict:
        """The pod as the API server has it now (bind reads what it signs from here)."""
        return self._send("GET", "/api/v1/namespaces/{namespace}/pods/{name}", {"namespace": namespace, "name": name},
                          None, "application/json")

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str] | None = None) -> None:
        """POST pods/binding; the API server merges the Binding's ``annotations`` into the pod in the same
        update that sets ``spec.nodeName`` (kube-apiserver's BindingREST.setPodHostAndAnnotations)."""
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
        if annotations:
            meta["annotations"] = annotations
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
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
