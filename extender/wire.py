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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import orjson


class WireError(ValueError):
    """A request body that is not what kube-scheduler sends; the message names the field."""


def decode(body: bytes) -> Any:
    """The JSON value of a request body."""
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"request body is not JSON: {exc}") from None


def encode(value: Any) -> bytes:
    """Compact JSON (UTF-8, not ASCII-escaped)."""
    return orjson.dumps(value)


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


_NAMES_KEY = b'"NodeNames"'
_SPACE = b" \t\r\n"


def split_node_names(body: bytes) -> tuple[bytes, bytes] | None:
    """(the body without its ``NodeNames`` member, that member's array as sent) when ``NodeNames`` is
    the body's last member, as kube-scheduler writes ``ExtenderArgs`` (Pod, Nodes, NodeNames); else
    None. Nothing is decoded: the array's bytes can be recognised from an earlier request (kept
    ``spellings.Spellings``) and the rest decoded alone. The rest is a JSON object only when the key
    stands at the top level outside any string, which ``extender_args_known`` checks by decoding it."""
    at = body.rfind(_NAMES_KEY)
    if at < 0:
        return None
    start = len(body) - len(body[at + len(_NAMES_KEY):].lstrip(_SPACE))
    if body[start:start + 1] != b":":
        return None
    start = len(body) - len(body[start + 1:].lstrip(_SPACE))
    end = body.rstrip(_SPACE)
    if body[start:start + 1] != b"[" or not end.endswith(b"}"):
        return None
    end = end[:-1].rstrip(_SPACE)
    if not end.endswith(b"]") or len(end) <= start:
        return None
    head = body[:at].rstrip(_SPACE)
    if head.endswith(b","):
        head = head[:-1] + b"}"
    elif head.endswith(b"{"):
        head += b"}"
    else:
        return None
    return head, body[start:len(end)]


def extender_args_known(head: bytes, names: list[str]) -> ExtenderArgs | None:
    """``extender_args`` of a body split by ``split_node_names`` whose array decoded to ``names`` before
    (and passed the check then); None when the rest is not a JSON object that the split leaves
    meaning the same (then decode the whole body)."""
    try:
        value = orjson.loads(head)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or any(k.lower() == "nodenames" for k in value):
        return None
    return ExtenderArgs(_pod(_fields(value, "ExtenderArgs").get("pod")), names)


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


_NAME_JSON: dict[str, bytes] = {}  # node name -> its JSON string, encoded (bounded)
_HOST_PREFIX: dict[str, bytes] = {}  # node name -> b'{"Host":"<name>","Score":' (bounded)
_KEPT_LIMIT = 100_000


def _kept_encodings(kept: dict[str, bytes], names: list[str], make: Callable[[str], bytes]) -> list[bytes]:
    """``make(name)`` for each name, kept per name in ``kept`` (cleared when it outgrows the limit)."""
    try:
        return list(map(kept.__getitem__, names))
    except KeyError:
        if len(kept) > _KEPT_LIMIT:
            kept.clear()
        out = []
        for n in names:
            text = kept.get(n)
            if text is None:
                text = kept[n] = make(n)
            out.append(text)
        return out


def names_json(names: list[str]) -> list[bytes]:
    """Each name as JSON (kept per name)."""
    return _kept_encodings(_NAME_JSON, names, lambda n: encode_basestring(n).encode())


def filter_result_bytes(fits: list[str], failed: dict[str, str], unresolvable: dict[str, str],
                        fits_json: Iterable[bytes] | None = None) -> bytes:
    """``filter_result(fits, failed, unresolvable)``, encoded; node names from kept encodings
    (``fits_json``: the fits already encoded, in order)."""
    parts = names_json(fits) if fits_json is None else fits_json
    return b"".join((b'{"Nodes":null,"NodeNames":[', b",".join(parts), b'],"FailedNodes":', encode(failed),
                     b',"FailedAndUnresolvableNodes":', encode(unresolvable), b',"Error":""}'))


def priority_list(scores: list[tuple[str, int]]) -> bytes:
    """``HostPriorityList``, encoded (spelled directly: a third of the time of building dicts)."""
    return ("[" + ",".join([f'{{"Host":{encode_basestring(h)},"Score":{int(s)}}}' for h, s in scores])
            + "]").encode()


_SCORE_SUFFIX = [f"{s}}},".encode() for s in range(11)]


def host_prefixes(names: list[str]) -> list[bytes]:
    """Each name's '{"Host":<name>,"Score":' (kept per name)."""
    return _kept_encodings(_HOST_PREFIX, names, lambda n: f'{{"Host":{encode_basestring(n)},"Score":'.encode())


def priority_list_ids(names: list[str], ids: list[int], score_of_id: list[int],
                      prefixes: list[bytes] | None = None) -> bytes:
    """``HostPriorityList`` for ``names`` whose raw score ids are ``ids``, scored by ``score_of_id``,
    encoded; equal to ``priority_list(zip(names, scores))``. Each host's JSON prefix is kept and the
    answer joined from kept bytes, without a Python step per node.

    Every host is listed, score 0 included. kube-scheduler's ``prioritizeNodes`` (schedule_one.go) adds
    ``score * weight`` only for listed hosts, but it also draws the random tie-breaker (``Randomizer``)
    only for them, so a host left out would lose every tie of total scores; and 0 is rare under the
    fragmentation policy (a median 0.02 % of hosts in the 5,000-node bench), so leaving zeros out
    would change placement in ties and save almost nothing."""
    if not names:
        return b"[]"
    if prefixes is None:
        prefixes = host_prefixes(names)
    suffix = [_SCORE_SUFFIX[s] if 0 <= s <= 10 else f"{int(s)}}},".encode() for s in score_of_id]
    parts: list = [b""] * (2 * len(names))
    parts[0::2] = prefixes
    parts[1::2] = map(suffix.__getitem__, ids)
    body = b"".join(parts)
    return b"[" + body[:-1] + b"]"


def binding_result(error: str = "") -> dict:
    """``ExtenderBindingResult``."""
    return {"Error": error}


def preemption_result(victims: dict[str, tuple[list[str], int]]) -> dict:
    """``ExtenderPreemptionResult`` with MetaVictims."""
    return {"NodeNameToMetaVictims": {node: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
                                      for node, (uids, pdb) in victims.items()}}
