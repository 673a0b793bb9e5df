"""Small pieces of the Kubernetes wire protocol that several daemons share: watch streams and Events.

Objects travel as plain dicts (the client's ``_preload_content=False``), so daemons read and write
the wire format without the client's model classes in the way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import kubernetes
import orjson
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines


def client_configuration(kubeconfig: str) -> kubernetes.client.Configuration | None:
    """The API server's address and credentials: from the ``kubeconfig`` file, else the pod's in-cluster
    service account, else None (neither is there). Raises ``kubernetes.config.ConfigException`` or
    ``OSError`` for a file or mount that cannot be used."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        return None
    return configuration


class WatchExpired(Exception):
    """A watch's resourceVersion is older than the API server keeps (410 Gone): list again."""


def watch_events(resp: Any) -> Iterator[dict]:
    """The events of a watch response (``watch=True, _preload_content=False``), closing it at the end.

    An ERROR event with code 410 raises :class:`WatchExpired`; any other ERROR raises ``ApiException``.
    """
    try:
        for line in iter_resp_lines(resp):
            if not line:
                continue
            event = orjson.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                if status.get("code") == 410:
                    raise WatchExpired(status.get("message", "too old resource version"))
                raise kubernetes.client.ApiException(status=status.get("code"), reason=status.get("message"))
            yield event
    finally:
        resp.close()
        resp.release_conn()


def error_text(exc: BaseException) -> str:
    """One line saying why an API call failed (the Status message when there is one)."""
    if isinstance(exc, ApiException):
        try:
            return f"{exc.status}: {json.loads(exc.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{exc.status}: {exc.reason}"
    return str(exc) or type(exc).__name__


def now_rfc3339(micro: bool = False) -> str:
    """The current time as Kubernetes writes timestamps (``micro``: a MicroTime, as Leases and Events'
    ``eventTime`` take, which the API server refuses without the six fraction digits)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def pod_event(namespace: str, pod: str, pod_uid: str, event_type: str, reason: str, message: str,
              component: str, host: str) -> dict:
    """A core/v1 Event about a pod, as ``kubectl describe pod`` lists it."""
    now = now_rfc3339()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod}.{time.time_ns():x}", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace,
                           **({"uid": pod_uid} if pod_uid else {})},
        "type": event_type, "reason": reason, "message": message,
        "source": {"component": component, "host": host},
        "reportingComponent": component, "reportingInstance": host,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
