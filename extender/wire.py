"""kube-scheduler's extender JSON (k8s.io/kube-scheduler/extender/v1), read and written exactly.

In: ``ExtenderArgs {Pod, Nodes, NodeNames}`` (``Nodes`` is null with ``nodeCacheCapable: true``),
``ExtenderBindingArgs {PodName, PodNamespace, PodUID, Node}``, ``ExtenderPreemptionArgs {Pod,
NodeNameToVictims, NodeNameToMetaVictims}``. Out: ``ExtenderFilterResult {Nodes, NodeNames,
FailedNodes, FailedAndUnresolvableNodes, Error}``, ``HostPriorityList [{Host, Score}]``,
``ExtenderBindingResult {Error}``, ``ExtenderPreemptionResult {NodeNameToMetaVictims}`` with
``MetaVictims {Pods: [{UID}], NumPDBViolations}``.

Every reader raises ``WireError`` with a message naming the field that is wrong.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from dataclasses import dataclass
from typing import Any


class WireError(ValueError):
    """A request body that is not what kube-scheduler sends; the message names the field."""


def decode(body: bytes) -> Any:
    """The JSON value of a request body."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"request body is not JSON: {exc}") from None


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise WireError(f"{where} must be a JSON object")
    return value


def _fields(value: Any, where: str) -> dict:
    """A Go struct's fields by lower-cased name: Go's decoder matches field names case-insensitively,
    and the upstream types carry no JSON tags (so kube-scheduler sends ``Pod``, ``NodeNames``, ...)."""
    return {k.lower(): v for k, v in _obj(value, where).items()}


def _pod(value: Any, where: str = "Pod") -> dict:
    pod = _obj(value, where)
    meta = _obj(pod.get("metadata"), f"{where}.metadata")
    for key in ("name", "namespace"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            raise WireError(f"{where}.metadata.{key} must be a non-empty string")
    if not isinstance(pod.get("spec"), dict):
        raise WireError(f"{where}.spec must be a JSON object")
    return pod


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not set(map(type, value)) <= {str}:
        raise WireError(f"{where} must be a list of node names")
    return value


@dataclass(frozen=True)
class ExtenderArgs:
    """Filter and prioritize input: the pod and the candidate node names."""

    pod: dict
    node_names: list[str]


def extender_args(value: Any) -> ExtenderArgs:
    """Read ``ExtenderArgs``. With ``nodeCacheCapable`` the names come in ``NodeNames``; a scheduler
    configured without it sends ``Nodes`` (a NodeList), whose item names are used."""
    args = _fields(value, "ExtenderArgs")
    pod = _pod(args.get("pod"))
    names = args.get("nodenames")
    if names is None:
        nodes = args.get("nodes")
        if nodes is None:
            raise WireError("ExtenderArgs needs NodeNames (nodeCacheCapable: true) or Nodes")
        items = _obj(nodes, "Nodes").get("items") or []
        if not isinstance(items, list):
            raise WireError("Nodes.items must be a list")
        names = [_obj(n, "Nodes.items[]").get("metadata", {}).get("name", "") for n in items]
    return ExtenderArgs(pod, _names(names, "NodeNames"))


@dataclass(frozen=True)
class BindingArgs:
    """Bind input."""

    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def binding_args(value: Any) -> BindingArgs:
    """Read ``ExtenderBindingArgs``."""
    args = _fields(value, "ExtenderBindingArgs")
    out = []
    for key in ("PodName", "PodNamespace", "PodUID", "Node"):
        v = args.get(key.lower())
        if not isinstance(v, str) or not v:
            raise WireError(f"ExtenderBindingArgs.{key} must be a non-empty string")
        out.append(v)
    return BindingArgs(*out)


@dataclass(frozen=True)
class PreemptionArgs:
    """Preempt input: the pod and, per node, the UIDs of the victims kube-scheduler proposes."""

    pod: dict
    victims: dict[str, tuple[list[str], int]]  # node -> (victim pod UIDs, NumPDBViolations)
    victim_pods: dict[str, dict]  # UID -> full pod, when NodeNameToVictims was sent


def preemption_args(value: Any) -> PreemptionArgs:
    """Read ``ExtenderPreemptionArgs``: ``NodeNameToMetaVictims`` (nodeCacheCapable) or
    ``NodeNameToVictims`` (full pods)."""
    args = _fields(value, "ExtenderPreemptionArgs")
    pod = _pod(args.get("pod"))
    victims: dict[str, tuple[list[str], int]] = {}
    pods: dict[str, dict] = {}
    meta = args.get("nodenametometavictims")
    full = args.get("nodenametovictims")
    if meta is not None:
        for node, mv in _obj(meta, "NodeNameToMetaVictims").items():
            mv = _fields(mv, f"NodeNameToMetaVictims.{node}")
            uids = []
            for p in mv.get("pods") or []:
                uid = _fields(p, f"NodeNameToMetaVictims.{node}.Pods[]").get("uid")
                if not isinstance(uid, str) or not uid:
                    raise WireError(f"NodeNameToMetaVictims.{node}.Pods[].UID must be a non-empty string")
                uids.append(uid)
            victims[node] = (uids, _count(mv.get("numpdbviolations", 0), f"NodeNameToMetaVictims.{node}"))
    elif full is not None:
        for node, v in _obj(full, "NodeNameToVictims").items():
            v = _fields(v, f"NodeNameToVictims.{node}")
            uids = []
            for p in v.get("pods") or []:
                p = _pod(p, f"NodeNameToVictims.{node}.Pods[]")
                uid = p["metadata"].get("uid", "")
                uids.append(uid)
                pods[uid] = p
            victims[node] = (uids, _count(v.get("numpdbviolations", 0), f"NodeNameToVictims.{node}"))
    else:
        raise WireError("ExtenderPreemptionArgs needs NodeNameToMetaVictims or NodeNameToVictims")
    return PreemptionArgs(pod, victims, pods)


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError(f"{where}.NumPDBViolations must be a whole number >= 0")
    return value


# -- results ----------------------------------------------------------------------------------------

def filter_result(fits: list[str] | None = None, failed: dict[str, str] | None = None,
                  unresolvable: dict[str, str] | None = None, error: str = "") -> dict:
    """``ExtenderFilterResult`` with node names (nodeCacheCapable), ``Nodes`` null."""
    return {"Nodes": None, "NodeNames": fits if fits is not None else None, "FailedNodes": failed or {},
            "FailedAndUnresolvableNodes": unresolvable or {}, "Error": error}


def priority_list(scores: list[tuple[str, int]]) -> bytes:
    """``HostPriorityList``, encoded (spelled directly: a third of the time of building dicts)."""
    return ("[" + ",".join([f'{{"Host":{encode_basestring(h)},"Score":{int(s)}}}' for h, s in scores])
            + "]").encode()


def binding_result(error: str = "") -> dict:
    """``ExtenderBindingResult``."""
    return {"Error": error}


def preemption_result(victims: dict[str, tuple[list[str], int]]) -> dict:
    """``ExtenderPreemptionResult`` with MetaVictims."""
    return {"NodeNameToMetaVictims": {node: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
                                      for node, (uids, pdb) in victims.items()}}
