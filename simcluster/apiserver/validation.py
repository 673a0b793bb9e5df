"""Validation: wrong JSON types are 400 (the decoder's error), invalid values are 422 with causes."""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, FieldError, bad_request, invalid
from .microtime import MICROTIME_FIELDS
from .microtime import parse_error as microtime_error
from .quantity import QuantityError
from .quantity import parse as parse_quantity
from .quota import quota_errors
from .resources import ResourceInfo
from .selectors import validate_label_key, validate_label_value

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)

# Expected JSON types of the fields a client is most likely to get wrong: path -> type name.
_TYPES: dict[str, str] = {
    "metadata": "object", "metadata.name": "string", "metadata.namespace": "string",
    "metadata.generateName": "string", "metadata.labels": "map[string]string",
    "metadata.annotations": "map[string]string", "metadata.resourceVersion": "string",
    "metadata.uid": "string", "metadata.finalizers": "[]string", "metadata.ownerReferences": "array",
    "spec": "object", "status": "object", "data": "map[string]string",
    "stringData": "map[string]string", "webhooks": "array", "type": "string",
}
_POD_TYPES: dict[str, str] = {
    "spec.containers": "array", "spec.initContainers": "array", "spec.nodeName": "string",
    "spec.schedulerName": "string", "spec.tolerations": "array", "spec.nodeSelector": "map[string]string",
    "status.phase": "string", "status.conditions": "array",
}
_NODE_TYPES: dict[str, str] = {"spec.unschedulable": "bool", "spec.taints": "array", "status.conditions": "array"}
_LEASE_TYPES: dict[str, str] = {
    "spec.holderIdentity": "string", "spec.leaseDurationSeconds": "int", "spec.leaseTransitions": "int",
    "spec.acquireTime": "string", "spec.renewTime": "string",
}
_GO_TYPES = {"object": "struct", "array": "slice", "string": "string", "int": "int32", "bool": "bool"}


def _type_ok(value: Any, want: str) -> bool:
    if value is None:
        return True
    if want == "object":
        return isinstance(value, dict)
    if want == "array":
        return isinstance(value, list)
    if want == "string":
        return isinstance(value, str)
    if want == "bool":
        return isinstance(value, bool)
    if want == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if want == "[]string":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if want == "map[string]string":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return True


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def check_types(info: ResourceInfo, obj: Any) -> None:
    """Raise 400 the way the Go JSON decoder would for a body of the wrong shape."""
    if not isinstance(obj, dict):
        raise bad_request(
            f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
            f"json: cannot unmarshal {type(obj).__name__} into Go value of type struct"
        )
    table = dict(_TYPES)
    table.update({"pods": _POD_TYPES, "nodes": _NODE_TYPES, "leases": _LEASE_TYPES}.get(info.name, {}))
    for path, want in table.items():
        value = _lookup(obj, path)
        if not _type_ok(value, want):
            raise bad_request(
                f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: json: cannot '
                f"unmarshal {type(value).__name__} into Go struct field {info.kind}.{path} of type "
                f"{_GO_TYPES.get(want, want)}"
            )
    for path in MICROTIME_FIELDS.get(info.name, ()):
        value = _lookup(obj, path)
        why = microtime_error(value) if isinstance(value, str) else None
        if why:
            raise bad_request(f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: {why}')
    if info.name == "pods":
        for key in ("containers", "initContainers"):
            for i, c in enumerate(_lookup(obj, f"spec.{key}") or []):
                if not isinstance(c, dict) or not _type_ok(c.get("name"), "string") or not _type_ok(c.get("image"), "string"):
                    raise bad_request(
                        f'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal into Go struct '
                        f"field PodSpec.spec.{key} of type v1.Container"
                    )
                resources = c.get("resources") if isinstance(c.get("resources"), dict) else {}
                for field in ("limits", "requests"):
                    _check_quantities(info, resources.get(field))
        _check_quantities(info, _lookup(obj, "spec.overhead"))
    if info.name == "resourcequotas":
        _check_quantities(info, _lookup(obj, "spec.hard"))
    expected_kind = obj.get("kind")
    if expected_kind not in (None, "", info.kind):
        raise bad_request(
            f'{expected_kind} in version "{info.version}" cannot be handled as a {info.kind}: '
            f"the object provided is unrecognized (must be of type {info.kind})"
        )


def _check_quantities(info: ResourceInfo, values: Any) -> None:
    """A resource list's values must be quantities: the decoder's 400 otherwise."""
    for value in (values or {}).values() if isinstance(values, dict) else ():
        try:
            parse_quantity(value)
        except QuantityError as exc:
            raise bad_request(f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: {exc}') from None


def _check_name(info: ResourceInfo, name: str, errors: list[FieldError]) -> None:
    if info.name == "namespaces":
        if len(name) > 63 or not _LABEL.match(name):
            errors.append(FieldError("Invalid", "metadata.name", LABEL_MSG, name))
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        errors.append(FieldError("Invalid", "metadata.name", SUBDOMAIN_MSG, name))


def _check_meta(meta: dict[str, Any], errors: list[FieldError]) -> None:
    for key, value in (meta.get("labels") or {}).items():
        why = validate_label_key(key)
        if why:
            errors.append(FieldError("Invalid", "metadata.labels", why.split(": ", 2)[-1], key))
        why = validate_label_value(value)
        if why:
            errors.append(FieldError("Invalid", "metadata.labels", why.split(": ", 2)[-1], value))
    total = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items())
    if total > 256 * 1024:
        errors.append(FieldError("TooLong", "metadata.annotations", "must have at most 262144 bytes", ""))


def _check_pod(pod: dict[str, Any], errors: list[FieldError]) -> None:
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError("Required", "spec.containers"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            base = f"spec.{key}[{i}]"
            name = c.get("name") or ""
            if not name:
                errors.append(FieldError("Required", f"{base}.name"))
            elif len(name) > 63 or not _LABEL.match(name):
                errors.append(FieldError("Invalid", f"{base}.name", LABEL_MSG, name))
            elif name in seen:
                errors.append(FieldError("Duplicate", f"{base}.name", "", name))
            seen.add(name)
            if not c.get("image") and key == "containers":
                errors.append(FieldError("Required", f"{base}.image"))


def _check_webhooks(cfg: dict[str, Any], errors: list[FieldError]) -> None:
    for i, hook in enumerate(cfg.get("webhooks") or []):
        base = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            errors.append(FieldError("Invalid", base, "must be an object", ""))
            continue
        if not hook.get("name"):
            errors.append(FieldError("Required", f"{base}.name"))
        cc = hook.get("clientConfig") or {}
        if bool(cc.get("url")) == bool(cc.get("service")):
            errors.append(FieldError("Required", f"{base}.clientConfig", "exactly one of url or service is required"))
        if not hook.get("admissionReviewVersions"):
            errors.append(FieldError("Required", f"{base}.admissionReviewVersions"))
        elif "v1" not in hook["admissionReviewVersions"]:
            errors.append(FieldError("Invalid", f"{base}.admissionReviewVersions", "must include v1", ""))
        if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            errors.append(FieldError("Unsupported", f"{base}.sideEffects", 'supported values: "None", "NoneOnDryRun"',
                                     hook.get("sideEffects") or ""))
        if hook.get("failurePolicy") not in ("Fail", "Ignore"):
            errors.append(FieldError("Unsupported", f"{base}.failurePolicy", 'supported values: "Fail", "Ignore"',
                                     hook.get("failurePolicy")))


def _check_event(event: dict[str, Any], errors: list[FieldError]) -> None:
    """A core/v1 Event without ``eventTime`` (as kubectl describe lists them) is about an object of its
    own namespace; one with no namespace may live in ``default`` (kube-apiserver's legacy rule)."""
    if event.get("eventTime"):
        return
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved = (event.get("involvedObject") or {}).get("namespace") or ""
    if involved != namespace and not (not involved and namespace == "default"):
        errors.append(FieldError("Invalid", "involvedObject.namespace", "does not match event.namespace", involved))


def validate(info: ResourceInfo, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid listing every bad field of ``obj`` (already defaulted, name assigned)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    errors: list[FieldError] = []
    if not name:
        errors.append(FieldError("Required", "metadata.name", "name or generateName is required"))
    else:
        _check_name(info, name, errors)
    _check_meta(meta, errors)
    if info.name == "pods":
        _check_pod(obj, errors)
    elif info.name in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        _check_webhooks(obj, errors)
    elif info.name == "resourcequotas":
        errors.extend(quota_errors(obj))
    elif info.name == "events":
        _check_event(obj, errors)
    elif info.name == "leases":
        d = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if d is not None and d <= 0:
            errors.append(FieldError("Invalid", "spec.leaseDurationSeconds", "must be greater than 0", d))
    if errors:
        raise invalid(info.kind, name, errors, info.group)


_POD_MUTABLE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def validate_pod_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Pod specs are immutable but for images, deadlines, added tolerations and removed scheduling gates."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec == new_spec:
        return
    errors: list[FieldError] = []
    old_tol, new_tol = old_spec.get("tolerations") or [], new_spec.get("tolerations") or []
    if any(t not in new_tol for t in old_tol):
        errors.append(FieldError("Forbidden", "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
    gates_old, gates_new = old_spec.get("schedulingGates") or [], new_spec.get("schedulingGates") or []
    if any(g not in gates_old for g in gates_new):
        errors.append(FieldError("Forbidden", "spec.schedulingGates", "only deletion is allowed, but found new scheduling gate"))
    comparable = dict(new_spec)
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates", "terminationGracePeriodSeconds"):
        comparable.pop(key, None)
    baseline = {k: v for k, v in old_spec.items()
                if k not in ("activeDeadlineSeconds", "tolerations", "schedulingGates", "terminationGracePeriodSeconds")}
    for key in ("containers", "initContainers"):
        old_cs, new_cs = baseline.get(key) or [], comparable.get(key) or []
        if key in comparable and len(old_cs) == len(new_cs):
            comparable[key] = [dict(n, image=o.get("image")) if isinstance(n, dict) else n
                               for o, n in zip(old_cs, new_cs)]
    if comparable != baseline and not errors:
        errors.append(FieldError("Forbidden", "spec", _POD_MUTABLE_MSG))
    if errors:
        name = (new.get("metadata") or {}).get("name", "")
        raise invalid("Pod", name, errors)


def check_immutable_meta(info: ResourceInfo, old: dict[str, Any], new: dict[str, Any]) -> None:
    """uid cannot change on update (an empty uid takes the stored one)."""
    old_uid, new_meta = old["metadata"].get("uid"), new["metadata"]
    if new_meta.get("uid") and new_meta["uid"] != old_uid:
        raise invalid(info.kind, new_meta.get("name", ""),
                      [FieldError("Invalid", "metadata.uid", "field is immutable", new_meta["uid"])], info.group)


def parse_body_error(info: ResourceInfo, exc: Exception) -> ApiError:
    """The 400 for a body that is not JSON at all."""
    return bad_request(
        f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: {exc}'
    )
