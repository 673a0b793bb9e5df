"""Helpers of the real tier: pods as a user writes them, and waits on what the real cluster reports."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import kubernetes

from simcluster.embedded import poll_until

GPU_IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"


def pod(name: str, limits: dict[str, Any], *, namespace: str = "default", scheduler: str | None = None,
        annotations: dict[str, str] | None = None, priority_class: str | None = None,
        node_selector: dict[str, str] | None = None, command: list[str] | None = None) -> dict:
    """A pod as a user writes it: one container asking ``limits``, no scheduler named (the webhook
    routes it) unless ``scheduler``."""
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": GPU_IMAGE, "imagePullPolicy": "Never", "command": command or ["sleep", "3600"],
        "resources": {"limits": {k: str(v) for k, v in limits.items()}}}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    if priority_class:
        spec["priorityClassName"] = priority_class
    if node_selector:
        spec["nodeSelector"] = node_selector
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def read_pod(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> dict | None:
    """The pod as the API server returns it (plain JSON), or None once it is gone."""
    try:
        return json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _first_seen(event: dict) -> datetime:
    """When ``event`` first happened: a repeated event's lastTimestamp moves on with each repeat (a
    crash-looping pod's Pulled overtakes its BackOff), and the scheduler's events carry only eventTime,
    in microseconds where the kubelet's firstTimestamp is in seconds, so both are parsed, not compared
    as text."""
    stamp = event.get("firstTimestamp") or event.get("eventTime") or event["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).replace(microsecond=0)


def events_for(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> list[dict]:
    """The Events about pod ``name`` in the order they first happened (within a second, in the API
    server's order, which is the order they were made): reason, message, reporting component."""
    doc = json.loads(core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}",
                                                _preload_content=False).data)
    return [{"reason": e.get("reason"), "message": e.get("message", ""),
             "source": (e.get("source") or {}).get("component") or e.get("reportingComponent", "")}
            for e in sorted(doc["items"], key=_first_seen)]


def wait_for(predicate, what: str, timeout_s: float = 90.0, interval_s: float = 0.2):
    """``predicate()``'s first truthy value; TimeoutError naming ``what``. A hang guard only: the real
    tier's waits end on what the cluster reports, and are generous for a loaded 2-core machine."""
    return poll_until(predicate, timeout_s, interval_s, what)


def binaries_or_skip():
    """The real control plane's programs, or a skip of the test saying why there are none."""
    import pytest

    import realcluster
    try:
        return realcluster.find_binaries()
    except realcluster.BinariesMissing as exc:
        pytest.skip(str(exc))


def wait_running(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> dict:
    """The pod once Running (TimeoutError with its status and events otherwise)."""
    try:
        return wait_for(lambda: (p := read_pod(core, namespace, name)) and p["status"].get("phase") == "Running" and p,
                        f"pod {namespace}/{name} Running")
    except TimeoutError as exc:
        current = read_pod(core, namespace, name)
        raise TimeoutError(f"{exc}: status {json.dumps((current or {}).get('status'))}; "
                           f"events {events_for(core, namespace, name)}") from None
