"""``GET /api/v1/namespaces/<ns>/pods/<name>/log``: ``kubectl logs``, passed to the pod's kubelet.

As the real API server does, it checks the pod, its container and its node, then asks the kubelet at
the Node's ``InternalIP`` and ``daemonEndpoints.kubeletEndpoint.Port`` for
``/containerLogs/<ns>/<pod>/<container>`` and streams the answer back as text; the kubelet's refusal
(``container "main" in pod "x" is waiting to start: ContainerCreating``) becomes a 400 Status.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from . import errors
from .resources import NODES, PODS
from .store import Store
from .streaming import ChunkWriter

KUBELET_HANG_GUARD_S = 300.0   # a followed log waits as long as the container runs; this stops a dead kubelet
PASSED_ON = ("previous", "follow", "tailLines", "limitBytes", "timestamps", "sinceSeconds")


def kubelet_log_url(store: Store, namespace: str, name: str, query: dict[str, str]) -> str:
    """The kubelet URL that serves the log ``query`` asks for; a 400 ApiError where there is none."""
    pod = store.require(PODS, namespace, name).obj
    spec = pod.get("spec") or {}
    names = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers")
             for c in spec.get(key) or []]
    container = query.get("container") or ""
    if not container:
        if len(spec.get("containers") or []) != 1:
            choices = " ".join(c["name"] for c in spec.get("containers") or [])
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{choices}]")
        container = spec["containers"][0]["name"]
    elif container not in names:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node = store.get(NODES, "", node_name)
    status = (node.obj.get("status") or {}) if node else {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    address = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    if not port or not address:
        raise errors.bad_request(f"node {node_name} has no kubelet endpoint to read pod {name}'s logs from")
    passed = urllib.parse.urlencode({k: v for k, v in query.items() if k in PASSED_ON})
    path = "/".join(urllib.parse.quote(p, safe="") for p in (namespace, name, container))
    return f"http://{address}:{port}/containerLogs/{path}" + (f"?{passed}" if passed else "")


def serve_pod_log(handler: Any, store: Store, namespace: str, name: str, query: dict[str, str]) -> None:
    """Answer ``pods/log`` on ``handler`` (the API server's request handler) from the pod's kubelet."""
    url = kubelet_log_url(store, namespace, name, query)
    try:
        resp = urllib.request.urlopen(url, timeout=KUBELET_HANG_GUARD_S)  # noqa: S310 - the node's own address
    except urllib.error.HTTPError as exc:
        raise errors.bad_request(exc.read().decode(errors="replace").strip() or exc.reason) from None
    except OSError as exc:
        raise errors.internal(f"cannot reach the kubelet of pod {name}'s node: {exc}") from None
    with resp:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                            b"Cache-Control: no-cache, private\r\n\r\n")
        writer = ChunkWriter(handler.wfile)
        while True:
            data = resp.read1(65536)
            if not data:
                break
            writer.chunk(data)
        writer.end()
