"""The three PATCH formats: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902).

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch for the fields Tessera and
kubectl touch: lists with a ``patchMergeKey`` (containers by ``name``, conditions by ``type``, ...)
merge element by element, ``$patch: delete``/``replace`` and ``$deleteFromPrimitiveList/<f>`` work,
``$setElementOrder/<f>`` and ``$retainKeys`` are accepted and ignored, other lists are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)

# (kind, path with list elements unindexed) -> merge key; "" means a merge list of primitives.
_MERGE_KEYS: dict[str, str] = {
    "metadata.ownerReferences": "uid",
    "metadata.finalizers": "",
    "spec.containers": "name",
    "spec.initContainers": "name",
    "spec.ephemeralContainers": "name",
    "spec.containers.ports": "containerPort",
    "spec.containers.env": "name",
    "spec.containers.volumeMounts": "mountPath",
    "spec.containers.volumeDevices": "devicePath",
    "spec.initContainers.env": "name",
    "spec.initContainers.volumeMounts": "mountPath",
    "spec.initContainers.ports": "containerPort",
    "spec.volumes": "name",
    "spec.imagePullSecrets": "name",
    "spec.hostAliases": "ip",
    "spec.readinessGates": "conditionType",
    "spec.resourceClaims": "name",
    "spec.schedulingGates": "name",
    "spec.taints": "key",
    "spec.podCIDRs": "",
    "status.conditions": "type",
    "status.addresses": "type",
    "status.podIPs": "ip",
    "status.hostIPs": "ip",
    "status.resourceClaimStatuses": "name",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any], kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch to ``target`` (a ``kind`` object); returns a new object."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch body must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch, "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_map(target: dict[str, Any], patch: dict[str, Any], path: str) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None and directive != "merge":
        raise bad_request(f"Unknown patch type: {directive!r} in map")
    result = dict(target)
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = _join(path, key)
        current = result.get(key)
        if isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = _smp_map(current if isinstance(current, dict) else {}, value, sub)
        elif isinstance(value, list) and sub in _MERGE_KEYS:
            result[key] = _smp_list(current if isinstance(current, list) else [], value, sub, _MERGE_KEYS[sub])
        else:
            result[key] = copy.deepcopy(value)
    return result


def _smp_list(target: list[Any], patch: list[Any], path: str, merge_key: str) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if merge_key == "":  # merge list of primitives: union, keeping order
        out = list(target)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    out = [copy.deepcopy(x) for x in target]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"{path}: list of maps expected, got {type(item).__name__}")
        if merge_key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(_smp_map({}, item, path))
        else:
            out[idx] = _smp_map(out[idx], item, path)
    return out


def json_patch(target: dict[str, Any], operations: Any) -> Any:
    """RFC 6902 via ``jsonpatch``: a bad document is 400, an operation that cannot apply is 422."""
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        patch = jsonpatch.JsonPatch(operations)
    except Exception as exc:  # noqa: BLE001 - jsonpatch raises several types for bad documents
        raise bad_request(str(exc)) from None
    try:
        return patch.apply(copy.deepcopy(target))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
        # kube-apiserver words every operation that cannot apply (a failed test, a missing path) alike.
        raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {}) from None
    except Exception as exc:  # noqa: BLE001 - e.g. InvalidJsonPatch raised lazily on a malformed op
        raise bad_request(str(exc)) from None


def apply_patch(target: dict[str, Any], patch_body: Any, content_type: str, kind: str) -> dict[str, Any]:
    """Apply a patch of the given media type; the result must still be an object."""
    if content_type == JSON_PATCH:
        result = json_patch(target, patch_body)
    elif content_type == MERGE_PATCH:
        if not isinstance(patch_body, dict):
            raise bad_request("merge patch body must be a JSON object")
        result = merge_patch(target, patch_body)
    elif content_type == STRATEGIC_PATCH:
        result = strategic_merge_patch(target, patch_body, kind)
    else:
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "the patched document is not an object")
    return result
