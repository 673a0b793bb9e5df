"""Defaulting: the fields the real API server fills in when a client leaves them out."""

from __future__ import annotations

import base64
from typing import Any

from .resources import ResourceInfo


def _image_pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    tag = tail.split(":", 1)[1] if ":" in tail else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_container(c: dict[str, Any]) -> None:
    if isinstance(c.get("image"), str) and c["image"]:
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.get("resources")
    if isinstance(res, dict) and isinstance(res.get("limits"), dict):
        # Requests default to limits for every resource named only in limits (extended resources too).
        requests = res.setdefault("requests", {})
        if isinstance(requests, dict):
            for name, qty in res["limits"].items():
                requests.setdefault(name, qty)
    c.setdefault("resources", {})


def _qos_class(containers: list[dict[str, Any]]) -> str:
    requests_seen = limits_seen = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for r in ("cpu", "memory"):
            if r in req:
                requests_seen = True
            if r in lim:
                limits_seen = True
            if r not in lim or req.get(r) != lim.get(r):
                guaranteed = False
    if not requests_seen and not limits_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: dict[str, Any]) -> None:
    """Fill a new pod's spec and status defaults in place."""
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    status = pod.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        status.setdefault("qosClass", _qos_class(containers))


def default_namespace(ns: dict[str, Any]) -> None:
    """A namespace gets the ``kubernetes`` finalizer, phase Active and its name label."""
    name = ns.get("metadata", {}).get("name", "")
    labels = ns["metadata"].setdefault("labels", {})
    if isinstance(labels, dict) and name:
        labels["kubernetes.io/metadata.name"] = name
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns.setdefault("status", {}).setdefault("phase", "Active")


def default_secret(secret: dict[str, Any]) -> None:
    """``type: Opaque`` and ``stringData`` folded into ``data`` (base64)."""
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict):
        data = secret.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def default_webhook_configuration(cfg: dict[str, Any], mutating: bool) -> None:
    """The v1 defaults of each webhook (failurePolicy Fail, timeoutSeconds 10, ...)."""
    for hook in cfg.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        svc = (hook.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def apply_defaults(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Default a new or replaced object of kind ``info`` in place."""
    if info.name == "pods":
        default_pod(obj)
    elif info.name == "namespaces":
        default_namespace(obj)
    elif info.name == "secrets":
        default_secret(obj)
    elif info.name == "mutatingwebhookconfigurations":
        default_webhook_configuration(obj, mutating=True)
    elif info.name == "validatingwebhookconfigurations":
        default_webhook_configuration(obj, mutating=False)
