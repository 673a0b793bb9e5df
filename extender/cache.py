"""What the extender knows of the cluster: nodes (inventory, allocatable CPU and memory, labels) in a
``Fleet``, the pods that hold grants on them (from their assignment annotations), the bind in flight
(assumptions), and per node the shapes of pods bound and not yet allocated.

Fed by ``extender.informer`` (list, then watch) and by ``bind`` (``assume`` at once, ``forget`` on
failure); rebuilt completely from the API server on restart. Every read and change holds ``lock``;
nothing holds it across an API call.

Who holds what: a pod holds grants on the node it is bound to (``spec.nodeName``), as its assignment
says; a pod the extender signed an assignment for and whose Binding has not landed yet holds them on
the node the assignment names, so a new replica never hands the share out again; a bound pod without
an assignment holds its CPU and memory.

Which assignment counts: one the extender signed for the pod, or one the device plugin wrote (unsigned)
for a pod bound to its node that holds exactly what the pod asks for and what its ``tessera.io/allocated``
record says. Anything else (empty, badly signed, forged, removed) is rejected with a warning naming the
pod, and the pod keeps what it was last seen holding, else what its allocated record says where that
matches its request: an annotation a pod's owner writes never adds to its share, nor takes it away.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY
from tessera.assignment import (
    WRITTEN_BY_EXTENDER,
    WRITTEN_BY_PLUGIN,
    Assignment,
    AssignmentError,
    read_assignment,
    verify_assignment,
)
from tessera.allocated import decode_allocated
from tessera.inventory import NodeInventory
from tessera.log import get_logger

from extender.dranodes import claim_status_problem, dra_node, dra_request
from extender.placement.fleet import Fleet
from extender.assignments import NodeMismatchError, ask_amounts, holding_mismatch, placement_of
from extender.expectations import ExpectedBinds
from extender.placement.nodestate import DEFAULT_TIMESLICE_REPLICAS, NodeState, StateError
from extender.placement.grants import Placement
from tessera.quantity import QuantityError, cpu_millis, memory_bytes
from tessera.podrequest import PodRequest, RequestError, pod_request

log = get_logger("extender")
MAX_VERIFIED = 65536


@dataclass
class PodRecord:
    """One pod that holds (or is about to hold) something on a node."""

    key: str
    uid: str
    node: str
    request: PodRequest | None
    doc: Assignment | None
    allocated: bool
    amounts: frozenset
    bound: bool = False
    rejected: str = ""  # why its assignment annotation is not trusted ("" when it is, or there is none)
    rejected_value: object = None  # that annotation
    fallback: Assignment | None = None  # what its allocated record says, where that matches its request
    placement: Placement | None = None  # the placement ``doc`` was written from, where this extender bound it


class ClusterCache:
    """Nodes and the pods placed on them, with the binds in flight."""

    def __init__(self, workload_label: str = "", public_key=None,
                 timeslice_replicas: int = DEFAULT_TIMESLICE_REPLICAS) -> None:
        self.lock = threading.RLock()
        self.fleet = Fleet()
        self.workload_label = workload_label
        self.public_key = public_key  # trusted keys: one Ed25519 public key or a TrustedKeys; None: no check
        self.timeslice_replicas = timeslice_replicas
        self._node_facts: dict[str, tuple] = {}
        # (annotation, pod UID) -> the checked doc, and the placement it was written from where this
        # replica bound the pod (so its watch events re-read no device IDs)
        self._verified_docs: dict[tuple[str, str], tuple[Assignment, Placement | None]] = {}
        self._verified_lock = threading.Lock()
        self._records: dict[str, PodRecord] = {}
        self._inflight: set[str] = set()
        self._mps_cards: dict[str, tuple[int, int]] = {}  # node -> (smallest, largest) MPS card GiB
        self.pending: dict[str, dict[str, frozenset]] = {}  # node -> pod -> amounts, bound and not allocated
        self.expected = ExpectedBinds()  # the nodes filter answered for pods whose bind has not arrived
        self.dra_nodes: set[str] = set()  # nodes where kube-scheduler serves nvidia.com/gpu through DRA (dranodes)

    # -- nodes -----------------------------------------------------------------------------------

    def node_event(self, kind: str, node: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED Node."""
        meta = node.get("metadata") or {}
        name = meta.get("name", "")
        if kind == "DELETED":
            with self.lock:
                self._node_facts.pop(name, None)
                self._mps_cards.pop(name, None)
                self.dra_nodes.discard(name)
                self.fleet.remove(name)
            return
        facts = self._facts(name, node)
        dra = dra_node(node)
        with self.lock:
            if dra:
                self.dra_nodes.add(name)
            else:
                self.dra_nodes.discard(name)
            if self._node_facts.get(name) == facts:
                return
            self._node_facts[name] = facts
            self._rebuild_node(name)

    def _facts(self, name: str, node: dict) -> tuple:
        meta = node.get("metadata") or {}
        alloc = (node.get("status") or {}).get("allocatable") or {}
        try:
            cpu, mem = cpu_millis(alloc.get("cpu", 0)), memory_bytes(alloc.get("memory", 0))
        except QuantityError:
            cpu = mem = 0
        labels = meta.get("labels") or {}
        return (((meta.get("annotations") or {}).get(ANNOTATION_INVENTORY) or ""), cpu, mem,
                tuple(sorted(labels.items())))

    def _rebuild_node(self, name: str) -> None:
        text, cpu, mem, labels = self._node_facts[name]
        try:
            inventory = NodeInventory.from_json(text) if text else NodeInventory(node=name, gpus=())
        except Exception as exc:  # noqa: BLE001 - a bad inventory leaves the node without GPUs, said once
            log.warning("node_inventory_unreadable", node=name, reason=str(exc)[:200])
            inventory = NodeInventory(node=name, gpus=())
        if inventory.node != name:
            inventory = NodeInventory(node=name, gpus=inventory.gpus)
        state = NodeState.from_inventory(inventory, cpu, mem, dict(labels), self.timeslice_replicas)
        cards = [g.memory_gib for g in state.gpus if g.mode == "mps"]
        if cards:
            self._mps_cards[name] = (min(cards), max(cards))
        else:
            self._mps_cards.pop(name, None)
        old = self.fleet.get(name)
        placed = list(old.pods.values()) if old is not None else []
        if old is None:
            placed = [p for r in self._records.values() if r.node == name
                      for p in [self._placement(r, state)] if p is not None]
        for p in placed:
            try:
                state.assume(p)
            except StateError as exc:
                log.error("ledger_conflict", node=name, pod=p.pod, reason=str(exc))
        self.fleet.add(state)

    # -- pods ------------------------------------------------------------------------------------

    def pod_event(self, kind: str, pod: dict) -> None:
        """Apply an ADDED, MODIFIED or DELETED Pod."""
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
        phase = (pod.get("status") or {}).get("phase", "")
        record = None if kind == "DELETED" or phase in ("Succeeded", "Failed") else self._record(key, pod)
        with self.lock:
            if key in self._inflight and (record is None or not (pod.get("spec") or {}).get("nodeName")):
                if record is None:
                    self._inflight.discard(key)
                else:
                    return  # our bind is in flight: the assumption stands until it lands or fails
            self._inflight.discard(key)
            old = self._records.get(key)
            if old is not None and record is not None and old.uid != record.uid:
                self._drop(key)
                old = None
            if record is None:
                self._drop(key)
                return
            if record.rejected:
                self._keep_trusted_view(record, old)
            self._records[key] = record
            self._set_pending(record, old)
            node = self.fleet.get(record.node)
            if node is None:
                return
            placement = self._placement(record, node)
            held = node.pods.get(key)
            if held == placement:
                return
            if old is not None and old.node != record.node:
                self._release(old.node, key)
            if held is not None:
                node.release(key)
            if placement is not None:
                try:
                    node.assume(placement)
                except StateError as exc:
                    log.error("ledger_conflict", node=record.node, pod=key, reason=str(exc))

    def _record(self, key: str, pod: dict) -> PodRecord | None:
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        uid = meta.get("uid", "")
        bound = (pod.get("spec") or {}).get("nodeName") or ""
        value, allocated = annotations.get(ANNOTATION_ASSIGNMENT), annotations.get(ANNOTATION_ALLOCATED)
        if not bound and value is None:
            return None  # a pending pod holds nothing
        try:
            request = pod_request(pod, self.workload_label)
        except RequestError:
            request = None
        try:
            doc = self._assignment(uid, value, bound, request, allocated)
            rejected = ""
        except AssignmentError as exc:
            doc, rejected = None, str(exc)
        placement = None
        if doc is not None:
            kept = self._verified_docs.get((value, uid))
            placement = kept[1] if kept is not None and kept[0] is doc else None
        fallback = None
        if rejected and bound and request is not None:
            try:
                fallback = self._allocated(uid, bound, request, allocated)
            except AssignmentError:
                pass
        node = bound or (doc.node if doc is not None else "")
        if not node:
            return None
        amounts = ask_amounts(request) if request is not None else frozenset()
        if doc is None and request is not None and dra_request(request) and claim_status_problem(pod, request) is None:
            amounts = frozenset()  # its GPUs are a DRA claim's: no device plugin allocation to wait for
        return PodRecord(key, uid, node, request, doc, allocated is not None, amounts, bool(bound), rejected,
                         value if rejected else None, fallback, placement)

    def _assignment(self, uid: str, value, bound: str, request: PodRequest | None, allocated) -> Assignment | None:
        """The assignment to count for a pod (None without one); AssignmentError when the annotation is
        not to be trusted: not the extender's signature for this pod, or a plugin-written one that does
        not hold what the pod asks for and its allocated record says, or one for another node."""
        if value is None:
            if bound and allocated is not None:
                raise AssignmentError("assignment removed from a pod the device plugin has allocated")
            return None
        kept = self._verified_docs.get((value, uid)) if isinstance(value, str) else None
        doc = kept[0] if kept is not None else read_assignment(value)[0]  # kept: checked before
        if doc.written_by == WRITTEN_BY_EXTENDER:
            if self.public_key is not None and kept is None:
                doc = verify_assignment(value, uid, self.public_key)
                self.trust(value, uid, doc)
        elif doc.written_by != WRITTEN_BY_PLUGIN or not bound or doc.pod_uid != uid:
            raise AssignmentError(f"assignment written by {doc.written_by!r} for pod {doc.pod_uid} is unsigned, "
                                  "and only the device plugin writes one, for a pod bound to its node")
        elif request is None:
            raise AssignmentError("assignment written by the device plugin, and the pod's request to check it "
                                  "against cannot be read")
        elif self._allocated(uid, bound, request, allocated).containers != doc.containers:
            raise AssignmentError("assignment written by the device plugin differs from the pod's "
                                  "tessera.io/allocated record")
        if bound and doc.node != bound:
            raise AssignmentError(f"assignment is for node {doc.node!r}, the pod is bound to {bound!r}")
        return doc

    @staticmethod
    def _allocated(uid: str, bound: str, request: PodRequest, allocated) -> Assignment:
        """What a bound pod's ``tessera.io/allocated`` record says it holds, as a plugin-written assignment;
        AssignmentError unless the record is for its node and holds exactly what the pod asks for."""
        if allocated is None:
            raise AssignmentError("no tessera.io/allocated record")
        record = decode_allocated(allocated)
        if record.node != bound:
            raise AssignmentError(f"tessera.io/allocated is for node {record.node!r}, the pod is bound to {bound!r}")
        problem = holding_mismatch(record.containers, request)
        if problem:
            raise AssignmentError(f"tessera.io/allocated does not match the pod's request: {problem}")
        return record.as_assignment(uid)

    def _keep_trusted_view(self, record: PodRecord, old: PodRecord | None) -> None:
        """A pod whose assignment was rejected keeps what it was last seen holding on the same node, else
        what its allocated record says; said once per rejected value (call with ``lock``)."""
        same = old is not None and old.uid == record.uid and old.node == record.node
        if same and old.doc is not None:
            record.doc, counted = old.doc, "the last trusted assignment"
        elif record.fallback is not None:
            record.doc, counted = record.fallback, "the tessera.io/allocated record"
        else:
            counted = "CPU and memory only"
        if not (same and (old.rejected, old.rejected_value) == (record.rejected, record.rejected_value)):
            log.warning("assignment_rejected", pod=record.key, node=record.node, reason=record.rejected,
                        counted=counted)

    def trust(self, value: str, uid: str, doc: Assignment, placement: Placement | None = None) -> None:
        """Remember an assignment annotation as verified for a pod: one this extender just signed
        (``bind``, with the ``placement`` it was written from), or one whose signature was checked.
        Kept once per (annotation, pod UID): a pod's later events (Binding, the plugin's allocated
        mark) carry the same annotation, and a signature check costs far more than the lookup; the
        placement spares reading the document's device IDs back into the grants bind already held.
        Only successes are kept."""
        memo = self._verified_docs
        with self._verified_lock:  # bind threads and the informer thread both write here
            if len(memo) > MAX_VERIFIED:
                memo.pop(next(iter(memo)))  # oldest first: dicts keep insertion order
            memo[(value, uid)] = (doc, placement)

    def _placement(self, record: PodRecord, node: NodeState) -> Placement | None:
        held, req = record.placement, record.request
        if (held is not None and held.node == node.name and req is not None
                and (held.cpu_milli, held.memory_bytes, held.workload) == (req.cpu_milli, req.memory_bytes, req.workload)):
            return held  # the grants bind chose and its assignment says: nothing to read back
        if record.doc is not None:
            try:
                return placement_of(record.doc, node, record.key, record.request)
            except NodeMismatchError as exc:
                log.error("ledger_unreadable", pod=record.key, reason=str(exc))
        req = record.request
        if req is None:
            return None
        return Placement(pod=record.key, node=node.name, containers=(), cpu_milli=req.cpu_milli,
                         memory_bytes=req.memory_bytes, workload=req.workload)

    def _set_pending(self, record: PodRecord, old: PodRecord | None = None) -> None:
        if old is not None:
            self._unpend(old.node, old.key)
        if not record.allocated and record.amounts:
            self.pending.setdefault(record.node, {})[record.key] = record.amounts

    def _drop(self, key: str) -> None:
        old = self._records.pop(key, None)
        if old is None:
            return
        self._release(old.node, key)
        self._unpend(old.node, key)

    def _unpend(self, node: str, key: str) -> None:
        pods = self.pending.get(node)
        if pods is not None:
            pods.pop(key, None)
            if not pods:
                del self.pending[node]

    def _release(self, node_name: str, key: str) -> None:
        node = self.fleet.get(node_name)
        if node is not None and key in node.pods:
            node.release(key)

    # -- binds in flight ---------------------------------------------------------------------------

    def blocked(self, node: str, amounts: frozenset) -> str | None:
        """Why a pod asking ``amounts`` must not go to ``node`` now (per-shape rule), else None."""
        pods = self.pending.get(node)
        if not pods or not amounts:
            return None
        for other, theirs in pods.items():
            same = amounts & theirs
            if same:
                res, n = min(same)
                return (f"node(s) had a pod asking the same {res}: {n} bound and not yet allocated "
                        f"({other}); retry when the device plugin has allocated it")
        return None

    def holds(self, key: str) -> str | None:
        """The node a pod holds grants on (or is being bound to), else None."""
        with self.lock:
            record = self._records.get(key)
            return record.node if record is not None else None

    def bound_to(self, key: str) -> str | None:
        """The node a pod is bound to as the API server last said, else None."""
        record = self._records.get(key)
        return record.node if record is not None and record.bound else None

    def inflight(self, key: str) -> bool:
        return key in self._inflight

    def assume(self, placement: Placement, request: PodRequest, uid: str, *, through_dra: bool = False) -> None:
        """Hold a placement at once, before its assignment and Binding are written (call with ``lock``).
        ``through_dra``: its GPUs are a DRA claim's (the placement holds CPU and memory only), so no
        device plugin allocation is awaited."""
        key = placement.pod
        self.expected.settle(key)  # from here this hold speaks for the pod
        self._drop(key)  # a stale hold from an earlier, failed bind of this pod
        self.fleet[placement.node].assume(placement)
        record = PodRecord(key, uid, placement.node, request, None, False,
                           frozenset() if through_dra else ask_amounts(request))
        self._records[key] = record
        self._inflight.add(key)
        self._set_pending(record)

    def forget(self, key: str) -> None:
        """Undo an assumption whose bind failed."""
        with self.lock:
            if key in self._inflight:
                self._inflight.discard(key)
                self._drop(key)

    def landed(self, key: str) -> None:
        """The bind's API calls succeeded: the pod is bound (a second bind of it is refused at once, not
        only once its watch event comes); the watch confirms the rest."""
        with self.lock:
            self._inflight.discard(key)
            record = self._records.get(key)
            if record is not None:
                record.bound = True

    def keys_by_uid(self) -> dict[str, str]:
        """Pod key by UID, for every pod that holds something (call with ``lock``)."""
        return {r.uid: k for k, r in self._records.items()}

    def pod_keys(self) -> list[str]:
        """Every pod that holds something (call with ``lock``)."""
        return list(self._records)

    def assignments_by_key(self) -> dict[str, int]:
        """How many pods hold an extender-signed assignment, by the id of the key that signed it (an
        admin drops a rotated-out key once its count is 0)."""
        with self.lock:
            docs = [r.doc for r in self._records.values() if r.doc is not None]
        return Counter(d.key_id or "unverified" for d in docs if d.written_by == WRITTEN_BY_EXTENDER)

    def mps_cards(self) -> tuple[int, int] | None:
        """(smallest, largest) MPS card in the cluster, in GiB; None when there is none."""
        with self.lock:
            values = list(self._mps_cards.values())
        if not values:
            return None
        return min(v[0] for v in values), max(v[1] for v in values)

    # -- views -----------------------------------------------------------------------------------

    def placements(self) -> dict[str, Placement]:
        """Every placement held, by pod."""
        with self.lock:
            return {k: p for n in self.fleet for k, p in n.pods.items()}
