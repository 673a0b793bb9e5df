"""The registry: what create, update, patch and delete mean for each kind, above the raw store.

It stamps metadata as the real server does (uid, creationTimestamp, generation, generateName),
defaults and validates, runs admission webhooks, keeps spec and status apart for kinds with a
status subresource, refuses stale writes, and deletes pods gracefully. ``Registry`` is also the
thread-safe in-process handle to the cluster: its public methods take and return plain dicts.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import orjson

from tessera.log import get_logger

from . import errors, pods
from .clock import now_rfc3339
from .defaults import apply_defaults
from .errors import ApiError
from .patch import STRATEGIC_PATCH, apply_patch
from .quota import Quotas
from .resources import NAMESPACES, PODS, ResourceInfo, by_name
from .selectors import object_matcher, parse_fields, parse_labels
from .store import Entry, Store
from .validation import check_immutable_meta, check_types, validate, validate_pod_update
from .webhooks import Admission

log = get_logger("apiserver")

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_RETRIES = 16


def _info(resource: str | ResourceInfo) -> ResourceInfo:
    return resource if isinstance(resource, ResourceInfo) else by_name(resource)


def _copy(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def _typed(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with kind and apiVersion set and first, as the real server writes them."""
    out: dict[str, Any] = {"kind": info.kind, "apiVersion": info.api_version}
    out.update((k, v) for k, v in obj.items() if k not in ("kind", "apiVersion"))
    return out


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return out


class Registry:
    """Kubernetes semantics over a ``Store``; thread-safe."""

    def __init__(self, store: Store, admission: Admission | None = None, graceful_pod_deletion: bool = True) -> None:
        self.store = store
        self.admission = admission
        self.graceful_pod_deletion = graceful_pod_deletion
        self.quotas = Quotas(store)

    # ================================================================ in-process face (dicts)

    def create(self, resource: str | ResourceInfo, obj: dict[str, Any], namespace: str | None = None,
               dry_run: bool = False) -> dict[str, Any]:
        """Create an object (webhooks included); returns the stored object."""
        info = _info(resource)
        ns = namespace if namespace is not None else (obj.get("metadata") or {}).get("namespace", "default")
        return json.loads(self.create_entry(info, ns if info.namespaced else "", _copy(obj), dry_run).raw)

    def get(self, resource: str | ResourceInfo, name: str, namespace: str = "") -> dict[str, Any]:
        """One object as a fresh dict; ``ApiError`` 404 if absent."""
        info = _info(resource)
        return json.loads(self.store.require(info, namespace if info.namespaced else "", name).raw)

    def list(self, resource: str | ResourceInfo, namespace: str | None = None, label_selector: str = "",
             field_selector: str = "") -> list[dict[str, Any]]:
        """Every matching object, in key order, as fresh dicts."""
        info = _info(resource)
        entries, _ = self.select(info, namespace, label_selector, field_selector)
        return [json.loads(e.raw) for e in entries]

    def replace(self, resource: str | ResourceInfo, obj: dict[str, Any], subresource: str = "",
                dry_run: bool = False) -> dict[str, Any]:
        """PUT semantics: replace the object named in ``obj`` (409 on a stale resourceVersion)."""
        info = _info(resource)
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "") if info.namespaced else ""
        return json.loads(self.update_entry(info, ns, meta.get("name", ""), _copy(obj), subresource, dry_run).raw)

    def patch(self, resource: str | ResourceInfo, name: str, body: Any, patch_type: str = STRATEGIC_PATCH,
              namespace: str = "", subresource: str = "", dry_run: bool = False) -> dict[str, Any]:
        """PATCH semantics with one of the media types of ``patch.PATCH_TYPES``."""
        info = _info(resource)
        ns = namespace if info.namespaced else ""
        return json.loads(self.patch_entry(info, ns, name, _copy(body), patch_type, subresource, dry_run).raw)

    def delete(self, resource: str | ResourceInfo, name: str, namespace: str = "",
               grace_period_seconds: int | None = None, preconditions: dict[str, str] | None = None,
               dry_run: bool = False) -> dict[str, Any]:
        """DELETE semantics (graceful for bound pods); returns the object as left or removed."""
        info = _info(resource)
        ns = namespace if info.namespaced else ""
        return json.loads(self.delete_entry(info, ns, name, grace_period_seconds, preconditions, dry_run).raw)

    # ================================================================ selection

    def select(self, info: ResourceInfo, namespace: str | None, label_selector: str | None,
               field_selector: str | None, after: tuple[str, str] | None = None) -> tuple[list[Entry], int]:
        """Entries matching both selectors, in key order, and the store's resourceVersion."""
        labels = parse_labels(label_selector)
        fields = parse_fields(field_selector, info.selectable_fields())
        index = None
        for f in info.indexed_fields:
            value = fields.exact(f)
            if value is not None:
                index = (f, value)
                break
        ns_from_fields = fields.exact("metadata.namespace")
        if namespace is None and ns_from_fields is not None and info.namespaced:
            namespace = ns_from_fields
        pairs, rv = self.store.list(info, namespace, index, after)
        match = object_matcher(labels, fields)
        entries = [e for _, e in pairs] if match is None else [e for _, e in pairs if match(e.obj)]
        return entries, rv

    # ================================================================ create

    def _prepare_new(self, info: ResourceInfo, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        check_types(info, obj)
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
            if info is not NAMESPACES and self.store.get(NAMESPACES, "", namespace) is None:
                raise errors.not_found("namespaces", namespace)
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        obj = _typed(info, obj)
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(key, None)
        meta["creationTimestamp"] = now_rfc3339()
        if info.spec_field:
            meta["generation"] = 1
        if info is PODS:
            obj["status"] = {}  # a new pod's status is the server's: Pending and its QoS class
        apply_defaults(info, obj)
        return obj

    def create_entry(self, info: ResourceInfo, namespace: str, obj: dict[str, Any], dry_run: bool = False) -> Entry:
        """Create from a freshly parsed body (the body is consumed)."""
        obj = self._prepare_new(info, namespace, obj)
        if self.admission is not None:
            obj = self.admission.mutate(info, "", "CREATE", obj, None, dry_run)
            check_types(info, obj)
            apply_defaults(info, obj)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        meta["uid"] = str(uuid.uuid4())
        validate(info, obj)
        if self.admission is not None:
            self.admission.validate(info, "", "CREATE", obj, None, dry_run)
        if dry_run:
            existing = self.store.get(info, meta.get("namespace", ""), meta["name"])
            if existing is not None:
                raise errors.already_exists(info.name, meta["name"], info.group)
            self.quotas.check(info, obj)
            return Entry(obj, orjson.dumps(obj))
        with self.quotas.admitting(info, obj):
            entry = self.store.create(info, obj)
        log.debug("object_created", resource=info.name, namespace=meta.get("namespace", ""), name=meta["name"])
        return entry

    # ================================================================ update / patch

    def _prepare_update(self, info: ResourceInfo, old: dict[str, Any], new: dict[str, Any],
                        subresource: str) -> dict[str, Any]:
        check_types(info, new)
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        new = _typed(info, new)
        if info.namespaced:
            meta["namespace"] = old_meta.get("namespace", "")
        check_immutable_meta(info, old, new)
        meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta.get("creationTimestamp")
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if subresource == "status":
            if "spec" in old:
                new["spec"] = old["spec"]
            if "ownerReferences" in old_meta:
                meta["ownerReferences"] = old_meta["ownerReferences"]
        elif info.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        apply_defaults(info, new)
        if info.name == "pods" and subresource != "status":
            validate_pod_update(old, new)
        if info.spec_field and new.get(info.spec_field) != old.get(info.spec_field):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    def _write(self, info: ResourceInfo, old: Entry, new: dict[str, Any], subresource: str,
               dry_run: bool) -> Entry:
        """Admit and store ``new`` over ``old`` (which must still be current: else ``errors.stale``)."""
        if self.admission is not None:
            new = self.admission.mutate(info, subresource, "UPDATE", new, old.obj, dry_run)
            check_types(info, new)
        validate(info, new)
        if self.admission is not None:
            self.admission.validate(info, subresource, "UPDATE", new, old.obj, dry_run)
        if _without_rv(new) == _without_rv(old.obj):
            return old  # a no-op write changes nothing, not even the resourceVersion
        if dry_run:
            return Entry(new, orjson.dumps(new))
        meta = new["metadata"]
        entry = self.store.update(info, new, old.obj["metadata"]["resourceVersion"])
        gone = meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds")
        if gone:
            entry = self.store.delete(info, meta.get("namespace", ""), meta["name"])
        self.quotas.changed(info, meta.get("namespace", ""), old.obj, None if gone else new)
        return entry

    def update_entry(self, info: ResourceInfo, namespace: str, name: str, body: Any, subresource: str = "",
                     dry_run: bool = False) -> Entry:
        """PUT: ``body`` replaces the object; its resourceVersion, when set, must be the stored one."""
        check_types(info, body)
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if info.namespaced and meta.get("namespace", namespace) != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["name"] = name
        client_rv = meta.get("resourceVersion") or None
        for _ in range(_RETRIES):
            old = self.store.require(info, namespace, name)
            if client_rv and client_rv != old.obj["metadata"]["resourceVersion"]:
                raise errors.stale(info.name, name, info.group)
            new = self._prepare_update(info, old.obj, _copy(body), subresource)
            try:
                return self._write(info, old, new, subresource, dry_run)
            except ApiError as exc:
                if exc.reason != "Conflict" or client_rv:
                    raise
        raise errors.stale(info.name, name, info.group)

    def patch_entry(self, info: ResourceInfo, namespace: str, name: str, body: Any, content_type: str,
                    subresource: str = "", dry_run: bool = False) -> Entry:
        """PATCH: apply ``body`` to the current object; a resourceVersion the patch sets must be current."""
        for _ in range(_RETRIES):
            old = self.store.require(info, namespace, name)
            current = orjson.loads(old.raw)
            patched = apply_patch(current, _copy(body), content_type, info.kind)
            check_types(info, patched)
            meta = patched.setdefault("metadata", {})
            want_rv = meta.get("resourceVersion") or None
            if want_rv and want_rv != old.obj["metadata"]["resourceVersion"]:
                raise errors.stale(info.name, name, info.group)
            if meta.get("name", name) != name:
                raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
            meta["name"] = name
            new = self._prepare_update(info, old.obj, patched, subresource)
            try:
                return self._write(info, old, new, subresource, dry_run)
            except ApiError as exc:
                if exc.reason != "Conflict" or want_rv:
                    raise
        raise errors.stale(info.name, name, info.group)

    # ================================================================ delete

    def delete_entry(self, info: ResourceInfo, namespace: str, name: str, grace_period: int | None = None,
                     preconditions: dict[str, str] | None = None, dry_run: bool = False) -> Entry:
        """DELETE with the real rules: preconditions, graceful pods, finalizers, namespace contents."""
        for _ in range(_RETRIES):
            old = self.store.require(info, namespace, name)
            _check_preconditions(info, old.obj, preconditions or {})
            if info is NAMESPACES:
                return self._delete_namespace(old, dry_run)
            meta = old.obj["metadata"]
            grace = self._grace_period(info, old.obj, grace_period)
            finalizers = meta.get("finalizers") or []
            if grace == 0 and not finalizers:
                if dry_run:
                    return old
                try:
                    entry = self.store.delete(info, namespace, name, meta["resourceVersion"])
                except ApiError as exc:
                    if exc.reason == "Conflict":
                        continue
                    raise
                log.debug("object_deleted", resource=info.name, namespace=namespace, name=name)
                self.quotas.changed(info, namespace, old.obj, None)
                return entry
            current_grace = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and (current_grace is not None and current_grace <= grace):
                return old  # already terminating at least as fast
            new = orjson.loads(old.raw)
            new["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            if "generation" in new["metadata"]:
                new["metadata"]["generation"] += 1
            if dry_run:
                return Entry(new, orjson.dumps(new))
            try:
                entry = self.store.update(info, new, meta["resourceVersion"])
            except ApiError as exc:
                if exc.reason == "Conflict":
                    continue
                raise
            log.info("object_terminating", resource=info.name, namespace=namespace, name=name, grace=grace)
            self.quotas.changed(info, namespace, old.obj, entry.obj)
            return entry
        raise errors.stale(info.name, name, info.group)

    def _grace_period(self, info: ResourceInfo, obj: dict[str, Any], requested: int | None) -> int:
        if info is not PODS or not self.graceful_pod_deletion:
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        return max(0, int(grace if grace is not None else 30))

    def _delete_namespace(self, old: Entry, dry_run: bool) -> Entry:
        name = old.obj["metadata"]["name"]
        if name in PROTECTED_NAMESPACES:
            raise errors.forbidden("namespaces", name, "this namespace may not be deleted")
        if dry_run:
            return old
        for info, key in self.store.keys_in_namespace(name):
            try:
                self.store.delete(info, key[0], key[1])
            except ApiError:
                pass
        return self.store.delete(NAMESPACES, "", name)

    # ================================================================ pods/binding, pods/eviction

    def bind(self, namespace: str, name: str, binding: dict[str, Any]) -> None:
        """POST pods/binding: set spec.nodeName and the PodScheduled condition, once."""
        pods.bind(self.store, namespace, name, binding)

    def evict(self, namespace: str, name: str, eviction: dict[str, Any]) -> None:
        """POST pods/eviction: a graceful delete (no PodDisruptionBudgets here)."""
        grace, preconditions, dry_run = pods.eviction_options(eviction)
        self.delete_entry(PODS, namespace, name, grace, preconditions, dry_run)
        log.info("pod_evicted", namespace=namespace, pod=name)

    # ================================================================ watch

    def watch(self, info: ResourceInfo, namespace: str | None, label_selector: str | None,
              field_selector: str | None, since: int | None):
        """Open a store watch with both selectors (see ``Store.watch``)."""
        match = object_matcher(parse_labels(label_selector), parse_fields(field_selector, info.selectable_fields()))
        return self.store.watch(info, namespace, match, since)


def _check_preconditions(info: ResourceInfo, obj: dict[str, Any], pre: dict[str, str]) -> None:
    meta, name = obj["metadata"], obj["metadata"]["name"]
    if pre.get("uid") and pre["uid"] != meta["uid"]:
        raise errors.conflict(info.name, name,
                              f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}", info.group)
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
        raise errors.conflict(info.name, name,
                              f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                              f"ResourceVersion in object meta: {meta['resourceVersion']}", info.group)
