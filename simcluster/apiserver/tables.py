"""Server-side printing: ``meta.k8s.io/v1 Table`` for ``kubectl get`` (the columns of the real printers)."""

from __future__ import annotations

import calendar
import time
from typing import Any, Callable

from .resources import ResourceInfo

Row = list[Any]


def wants_table(accept: str | None) -> str | None:
    """The Table version (``v1``/``v1beta1``) the Accept header asks for, or None."""
    if not accept:
        return None
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k] = v
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(ts: str | None) -> str:
    """The AGE column for a metav1.Time string."""
    if not ts:
        return "<unknown>"
    try:
        then = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<unknown>"
    return human_duration(time.time() - then)


def _col(name: str, description: str, priority: int = 0, typ: str = "string", fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


_NAME = _col("Name", "Name must be unique within a namespace.", fmt="name")
_AGE = _col("Age", "CreationTimestamp is a timestamp representing the server time when this object was created.")


def _pod_row(pod: dict[str, Any]) -> Row:
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if meta.get("deletionTimestamp") and status.get("reason") != "NodeLost":
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        meta["name"], f"{ready}/{total}", reason, str(restarts), age(meta.get("creationTimestamp")),
        status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


_POD_COLUMNS = [
    _NAME,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    _AGE,
    _col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    _col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
    _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
    _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
]


def _node_row(node: dict[str, Any]) -> Row:
    spec, status, meta = node.get("spec") or {}, node.get("status") or {}, node["metadata"]
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(
        k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/") and "/" in k
    )
    if (meta.get("labels") or {}).get("kubernetes.io/role"):
        roles.append(meta["labels"]["kubernetes.io/role"])
    info = status.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        meta["name"], state, ",".join(r for r in roles if r) or "<none>", age(meta.get("creationTimestamp")),
        info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>"),
    ]


_NODE_COLUMNS = [
    _NAME,
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    _AGE,
    _col("Version", "Kubelet Version reported by the node."),
    _col("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    _col("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    _col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
]


def _event_row(ev: dict[str, Any]) -> Row:
    io = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    return [age(last), ev.get("type", ""), ev.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}", ev.get("message", "")]


def _quota_row(quota: dict[str, Any]) -> Row:
    """printResourceQuota: ``<resource>: <used>/<hard>`` by name, limits.* in their own column."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    columns: dict[bool, list[str]] = {False: [], True: []}
    for name in sorted(hard):
        columns[name.split(".")[0] == "limits" and "." in name].append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [quota["metadata"]["name"], age(quota["metadata"].get("creationTimestamp")),
            ", ".join(columns[False]), ", ".join(columns[True])]


_EVENT_COLUMNS = [
    _col("Last Seen", "Time when last event occurred"), _col("Type", "Type of the event"),
    _col("Reason", "Reason of the event"), _col("Object", "The object the event is about"),
    _col("Message", "Message of the event"),
]

_PRINTERS: dict[str, tuple[list[dict[str, Any]], Callable[[dict[str, Any]], Row]]] = {
    "pods": (_POD_COLUMNS, _pod_row),
    "nodes": (_NODE_COLUMNS, _node_row),
    "events": (_EVENT_COLUMNS, _event_row),
    "namespaces": ([_NAME, _col("Status", "The status of the namespace"), _AGE],
                   lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o["metadata"].get("creationTimestamp"))]),
    "configmaps": ([_NAME, _col("Data", "Number of data entries", typ="integer"), _AGE],
                   lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o["metadata"].get("creationTimestamp"))]),
    "secrets": ([_NAME, _col("Type", "The type of the secret"), _col("Data", "Number of data entries", typ="integer"), _AGE],
                lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), age(o["metadata"].get("creationTimestamp"))]),
    "resourcequotas": ([_NAME, _AGE, _col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
                        _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.")],
                       _quota_row),
    "leases": ([_NAME, _col("Holder", "The holder of the lease"), _AGE],
               lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), age(o["metadata"].get("creationTimestamp"))]),
}
_WEBHOOKS = ([_NAME, _col("Webhooks", "Number of webhooks", typ="integer"), _AGE],
             lambda o: [o["metadata"]["name"], len(o.get("webhooks") or []), age(o["metadata"].get("creationTimestamp"))])


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(info: ResourceInfo, objects: list[dict[str, Any]], list_meta: dict[str, Any], version: str = "v1",
          include_object: str = "PartialObjectMetadata", with_columns: bool = True) -> dict[str, Any]:
    """A Table of ``objects`` with the columns of the kind's printer."""
    columns, printer = _PRINTERS.get(info.name, _WEBHOOKS)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj)}
        ro = _row_object(obj, include_object)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": list_meta}
    if with_columns:
        out["columnDefinitions"] = columns
    out["rows"] = rows
    return out
