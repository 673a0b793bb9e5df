"""An embedded API server with light GPU nodes, pods as users write them, and kube-scheduler's side of
the extender's HTTP, for the extender daemon's tests."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.lightnodes import light_node_object


@contextlib.contextmanager
def api_server(workdir: Path, nodes: list[NodeSpec], **kwargs) -> Iterator[tuple[ApiServer, Path]]:
    """An API server holding ``nodes`` as light nodes; yields it and a kubeconfig for it."""
    with ApiServer(**kwargs) as srv:
        for spec in nodes:
            srv.registry.create("nodes", light_node_object(spec))
        yield srv, srv.write_kubeconfig(workdir / "kubeconfig")


def mps_nodes(n: int, gpus: int = 1, model: str = "T4", prefix: str = "gpu") -> list[NodeSpec]:
    return [NodeSpec(name=f"{prefix}-{i}", model=model, gpus=gpus, mode="mps") for i in range(n)]


def gpu_pod(name: str, limits: dict, namespace: str = "default", scheduler: str = "tessera-scheduler",
            annotations: dict | None = None) -> dict:
    """A one-container pod asking ``limits`` (requests equal), as a user writes it."""
    limits = {k: str(v) for k, v in limits.items()}
    meta: dict = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"schedulerName": scheduler, "containers": [
                {"name": "main", "image": "cuda:12", "resources": {"limits": limits, "requests": dict(limits)}}]}}


def create(srv: ApiServer, pod: dict) -> dict:
    """Create a pod through the registry (as the API server stores it: uid, defaults)."""
    return srv.registry.create("pods", pod, namespace=pod["metadata"]["namespace"])


def post(url: str, verb: str, body: bytes | dict | list, headers: dict | None = None) -> tuple[int, object]:
    """POST to the extender as kube-scheduler does; the status and the decoded answer."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", f"/{verb}", data, {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode()


def bind_args(pod: dict, node: str) -> dict:
    """ExtenderBindingArgs as kube-scheduler sends it."""
    meta = pod["metadata"]
    return {"PodName": meta["name"], "PodNamespace": meta["namespace"], "PodUID": meta["uid"], "Node": node}
