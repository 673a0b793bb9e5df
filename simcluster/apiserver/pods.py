"""Pod subresources: ``pods/binding`` (assign a node once) and ``pods/eviction`` (a graceful delete)."""

from __future__ import annotations

from typing import Any

import orjson

from tessera.log import get_logger

from . import errors
from .errors import ApiError, FieldError
from .clock import now_rfc3339
from .resources import PODS
from .store import Store

log = get_logger("apiserver")
_RETRIES = 16


def bind(store: Store, namespace: str, name: str, binding: Any) -> None:
    """POST pods/binding: set spec.nodeName and the PodScheduled condition; 409 when already bound."""
    check_binding(binding, name)
    target = binding["target"]["name"]
    want_uid = (binding.get("metadata") or {}).get("uid")
    for _ in range(_RETRIES):
        old = store.get(PODS, namespace, name)
        if old is None:
            raise errors.not_found("pods", name)
        meta = old.obj["metadata"]
        if want_uid and want_uid != meta["uid"]:
            raise errors.conflict("pods/binding", name,
                                  f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: {meta['uid']}")
        if meta.get("deletionTimestamp"):
            raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host")
        bound = (old.obj.get("spec") or {}).get("nodeName")
        if bound:
            raise errors.conflict("pods/binding", name, f'pod {name} is already assigned to node "{bound}"')
        pod = orjson.loads(old.raw)
        pod["spec"]["nodeName"] = target
        extra = (binding.get("metadata") or {}).get("annotations") or {}
        if extra:
            pod["metadata"].setdefault("annotations", {}).update(extra)
        conditions = [c for c in pod.setdefault("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339()})
        pod["status"]["conditions"] = conditions
        try:
            store.update(PODS, pod, meta["resourceVersion"])
        except ApiError as exc:
            if exc.reason == "Conflict":
                continue
            raise
        log.info("pod_bound", namespace=namespace, pod=name, node=target)
        return
    raise errors.stale("pods", name)


def eviction_options(eviction: Any) -> tuple[int | None, dict[str, str] | None, bool]:
    """(grace period, preconditions, dry run) from a policy/v1 Eviction body."""
    if not isinstance(eviction, dict):
        raise errors.bad_request('Eviction in version "v1" cannot be handled as a Eviction')
    opts = eviction.get("deleteOptions") or {}
    if not isinstance(opts, dict):
        raise errors.bad_request("deleteOptions must be an object")
    return opts.get("gracePeriodSeconds"), opts.get("preconditions"), opts.get("dryRun") == ["All"]


def check_binding(binding: Any, name: str) -> None:
    """400/422 for a Binding body that is not one."""
    if not isinstance(binding, dict):
        raise errors.bad_request('Binding in version "v1" cannot be handled as a Binding')
    meta = binding.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    target = binding.get("target")
    if not isinstance(target, dict) or not target.get("name"):
        raise errors.invalid("Binding", name, [FieldError("Required", "target.name")])
    if target.get("kind") not in (None, "", "Node"):
        raise errors.invalid("Binding", name, [FieldError("Unsupported", "target.kind", 'supported values: "Node"', target["kind"])])
