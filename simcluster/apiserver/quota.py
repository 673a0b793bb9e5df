"""ResourceQuota: what an object costs, refusing a create over a quota, and ``status`` kept true.

What is counted is what kube-apiserver's quota evaluators count (k8s.io/kubernetes/pkg/quota/v1):

- every namespaced object: ``count/<resource>[.<group>]``, and ``configmaps``, ``secrets``,
  ``resourcequotas`` under their older names;
- a pod that has not ended (not Succeeded or Failed, not past its deletion grace): ``pods``,
  ``cpu``/``memory``/``ephemeral-storage`` and their ``requests.``/``limits.`` names, ``hugepages-*``,
  and extended resources by request only, as ``requests.<name>`` (``requests.nvidia.com/gpu``): a
  quota on ``nvidia.com/gpu`` without the prefix is accepted and never counts anything.

A create whose cost would take any quota of its namespace over ``status.hard`` is refused with the
real 403 (``exceeded quota: <name>, requested: ..., used: ..., limited: ...``); so is a pod that
names no cpu or memory for a quota on them (``failed quota: <name>: must specify ...``). The check
and the write run under one lock, so two creates cannot both take the last unit. ``status.hard`` is
``spec.hard``; ``status.used`` is recounted from the stored objects whenever a write changes what
they cost (the real quota controller's job, done here at once). Quota scopes are not supported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from tessera.log import get_logger

from . import errors
from .errors import ApiError, FieldError
from .quantity import ZERO, Quantity, parse
from .resources import PODS, RESOURCE_QUOTAS, RESOURCES, ResourceInfo
from .selectors import validate_label_key
from .store import Store

log = get_logger("apiserver")

Usage = dict[str, Quantity]
ONE = parse("1")
_COMPUTE = ("cpu", "memory", "ephemeral-storage")
_LEGACY_COUNTS = ("configmaps", "secrets", "resourcequotas")
# A quota on any of these makes every container name its cpu / memory (the evaluator's Constraints).
_MUST_SPECIFY = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
_STANDARD_NAMES = {
    *_COMPUTE, *(f"{k}.{r}" for k in ("requests", "limits") for r in _COMPUTE), "pods", "services",
    "replicationcontrollers", "resourcequotas", "secrets", "configmaps", "persistentvolumeclaims",
    "requests.storage", "services.nodeports", "services.loadbalancers",
}


def _add(total: Usage, name: str, amount: Quantity) -> None:
    total[name] = total[name] + amount if name in total else amount


def _sum_resources(containers: list[dict[str, Any]], field: str) -> Usage:
    total: Usage = {}
    for c in containers:
        for name, value in ((c.get("resources") or {}).get(field) or {}).items():
            _add(total, name, parse(value))
    return total


def _pod_resources(spec: dict[str, Any], field: str) -> Usage:
    """``resourcehelper.PodRequests``/``PodLimits``: the containers' sum, at least each init
    container's own, plus the pod overhead."""
    total = _sum_resources(spec.get("containers") or [], field)
    for init in spec.get("initContainers") or []:
        for name, amount in _sum_resources([init], field).items():
            if name not in total or amount.value > total[name].value:
                total[name] = amount
    for name, value in (spec.get("overhead") or {}).items():
        _add(total, name, parse(value))
    return total


def _is_extended(name: str) -> bool:
    """``helper.IsExtendedResourceName``: a prefixed name outside kubernetes.io, not a quota name."""
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


def pod_ended(pod: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a pod no longer holds compute quota: Succeeded, Failed, or past its deletion grace."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    meta = pod.get("metadata") or {}
    deleted, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        at = datetime.fromisoformat(deleted.replace("Z", "+00:00"))
        return (now or datetime.now(timezone.utc)) > at + timedelta(seconds=int(grace))
    return False


def _pod_compute(spec: dict[str, Any]) -> Usage:
    requests, limits = _pod_resources(spec, "requests"), _pod_resources(spec, "limits")
    out: Usage = {"pods": ONE}
    for name, amount in requests.items():
        if name in _COMPUTE or name.startswith("hugepages-"):
            out[name] = out[f"requests.{name}"] = amount
        elif _is_extended(name):
            out[f"requests.{name}"] = amount
    for name in _COMPUTE:
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    return out


def _count_names(info: ResourceInfo) -> set[str]:
    """The object-count names an object of ``info`` is counted under."""
    names = {f"count/{info.name}" + (f".{info.group}" if info.group else "")}
    return names | {info.name} if info.name in _LEGACY_COUNTS else names


def usage(info: ResourceInfo, obj: dict[str, Any] | None) -> Usage:
    """What ``obj`` (None: nothing) counts against a quota of its namespace."""
    if obj is None or not info.namespaced:
        return {}
    out: Usage = dict.fromkeys(_count_names(info), ONE)
    if info is PODS and not pod_ended(obj):
        out.update(_pod_compute(obj.get("spec") or {}))
    return out


def _pretty(values: Usage) -> str:
    return ",".join(f"{name}={values[name]}" for name in sorted(values))


def _missing_requests(pod: dict[str, Any], restricted: set[str]) -> str:
    """The evaluator's Constraints: each container names every cpu/memory resource a quota limits."""
    required = restricted & _MUST_SPECIFY
    missing: dict[str, list[str]] = {}
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = c.get("resources") or {}
        have = set(_pod_compute({"containers": [{"resources": res}]}))
        for name in sorted(required - have):
            missing.setdefault(name, []).append(c.get("name", ""))
    return "; ".join(f"{name} for: {','.join(sorted(who))}" for name, who in sorted(missing.items()))


def quota_errors(obj: dict[str, Any]) -> list[FieldError]:
    """422 causes for a ResourceQuota's spec (its values are quantities: ``check_types`` saw to that)."""
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    for name, value in (spec.get("hard") or {}).items():
        path = f"spec.hard[{name}]"
        why = validate_label_key(name) if "/" in name else None
        if why or ("/" not in name and name not in _STANDARD_NAMES):
            detail = why.split(": ", 2)[-1] if why else "must be a standard resource for quota"
            out.append(FieldError("Invalid", path, detail, name))
        if parse(value).value < 0:
            out.append(FieldError("Invalid", path, "must be greater than or equal to 0", str(value)))
    for key in ("scopes", "scopeSelector"):
        if spec.get(key):
            out.append(FieldError("Forbidden", f"spec.{key}", "quota scopes are not supported by this API server"))
    return out


class Quotas:
    """Admission against, and the status of, every ResourceQuota in a ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.RLock()

    def _quotas(self, namespace: str) -> list[tuple[str, Usage]]:
        """Each quota of the namespace: its name and hard limits (``status.hard`` is ``spec.hard`` here)."""
        quotas = [e.obj for _, e in self._store.list(RESOURCE_QUOTAS, namespace)[0]]
        return [(q["metadata"]["name"], {k: parse(v) for k, v in ((q.get("spec") or {}).get("hard") or {}).items()})
                for q in quotas]

    def _used(self, namespace: str, limited: set[str]) -> Usage:
        """What the namespace's objects cost, reading only the kinds that can cost a ``limited`` resource."""
        total: Usage = {}
        for info in RESOURCES:
            if info.namespaced and (info is PODS or _count_names(info) & limited):
                for _, entry in self._store.list(info, namespace)[0]:
                    for resource, amount in usage(info, entry.obj).items():
                        _add(total, resource, amount)
        return total

    def check(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        """Refuse (403) a create of ``obj`` that any quota of its namespace does not leave room for."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        quotas = self._quotas(namespace) if info.namespaced else []
        cost = usage(info, obj) if quotas else {}
        used: Usage | None = None  # read once, and only when a quota limits something obj costs
        for quota, hard in quotas:
            if info is PODS and (missing := _missing_requests(obj, set(hard))):
                raise errors.forbidden(info.name, name, f"failed quota: {quota}: must specify {missing}")
            requested = {k: v for k, v in cost.items() if k in hard}
            if not requested:
                continue
            if used is None:
                used = self._used(namespace, set().union(*(h for _, h in quotas)))
            over = sorted(k for k, v in requested.items() if (used.get(k, ZERO) + v).value > hard[k].value)
            if over:
                log.info("quota_exceeded", namespace=namespace, quota=quota, resources=over)
                raise errors.forbidden(info.name, name, (
                    f"exceeded quota: {quota}, requested: {_pretty({k: requested[k] for k in over})}, "
                    f"used: {_pretty({k: used.get(k, ZERO) for k in over})}, "
                    f"limited: {_pretty({k: hard[k] for k in over})}"))

    @contextmanager
    def admitting(self, info: ResourceInfo, obj: dict[str, Any]) -> Iterator[None]:
        """Check ``obj`` against the quotas and hold them until the caller has stored it, then
        recount: no other create is judged against the usage from before this one."""
        with self._lock:
            self.check(info, obj)
            yield
        self.changed(info, (obj.get("metadata") or {}).get("namespace", ""), None, obj)

    def changed(self, info: ResourceInfo, namespace: str, old: dict[str, Any] | None,
                new: dict[str, Any] | None) -> None:
        """Recount the namespace's quotas after a write to one of them, or one that changed what an
        object costs in a resource they limit."""
        quotas = self._quotas(namespace) if info.namespaced else []
        limited = set().union(*(hard for _, hard in quotas))
        before, after = (usage(info, old), usage(info, new)) if quotas and info is not RESOURCE_QUOTAS else ({}, {})
        if info is RESOURCE_QUOTAS or any(before.get(k) != after.get(k) for k in limited):
            self.recount(namespace)

    def recount(self, namespace: str) -> None:
        """Set every quota's ``status`` in ``namespace``: hard from spec, used from the stored objects."""
        with self._lock:
            quotas = [e.obj for _, e in self._store.list(RESOURCE_QUOTAS, namespace)[0]]
            used = self._used(namespace, {k for q in quotas for k in (q.get("spec") or {}).get("hard") or {}})
            for quota in quotas:
                hard = (quota.get("spec") or {}).get("hard") or {}
                status = {"hard": dict(hard), "used": {k: str(used.get(k, ZERO)) for k in hard}}
                if quota.get("status") == status:
                    continue
                new = dict(quota, metadata=dict(quota["metadata"]), status=status)  # stored objects stay as they are
                try:
                    self._store.update(RESOURCE_QUOTAS, new, quota["metadata"]["resourceVersion"])
                except ApiError as exc:
                    if exc.code in (404, 409):
                        continue  # deleted, or written meanwhile: that write recounts after this one
                    raise
                log.debug("quota_recounted", namespace=namespace, quota=quota["metadata"]["name"], used=status["used"])
