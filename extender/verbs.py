"""The four extender verbs on the cache: ``filter``, ``prioritize``, ``bind``, ``preempt``. Each takes the
request body (bytes) and answers kube-scheduler's JSON as a value (``wire`` spells both); bad input
answers an error and changes nothing.

``bind`` reads the pod as the API server has it (``pendingpods``, fed by the watch, else a GET), so
what it signs is what the pod asks, never what a request body said. It re-checks the fit against the
cache, which holds the binds in flight, under the cache lock; chooses the GPUs; holds them at once
(``ClusterCache.assume``); then, without the lock, writes the signed assignment and POSTs the
Binding. A failure gives the hold back. The lock is held only for the check-choose-assume step, so
two binds never take one share and no API call waits on it.

Hot paths: a pod's request in filter, prioritize and preempt is parsed once per UID and
resourceVersion; node-name lists seen again are answered by position (``namelists``), and prioritize
scores the positions its pod's filter passed; answers are encoded from kept JSON fragments; an
assignment this replica signs is remembered as verified, so its watch events need no signature check.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import replace
from itertools import compress, filterfalse
from collections.abc import Callable

from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import sign_assignment
from tessera.signingkeys import as_trusted, key_id
from tessera.log import get_logger
from tessera.newest import Newest

from extender import wire
from extender.cache import ClusterCache
from extender.kubeapi import KubeApi
from tessera.kube import error_text
from extender.assignments import ask_amounts, assignment_of
from extender.dranodes import claim_status_problem, dra_request, pass_dra_nodes
from extender.drascoring import DraScorer, NotScored, dra_pod_request
from extender.metrics import ExtenderMetrics
from extender.pendingpods import PendingPods
from extender.placement import (
    NameLists,
    Placement,
    PlacementError,
    PolicyContext,
    choose_gpus,
    filter_view,
    node_fit,
    node_scores,
    resolve_policy,
)
from extender.spellings import Spellings
from extender.warmer import ModelWarmer
from tessera.podrequest import PodRequest, RequestError, pod_request

log = get_logger("extender")
RECENT_REQUESTS = 8192
RECENT_FILTERS = 256
SHORT_LIST = 64


def _same_key(signing_key, public_keys) -> bool:
    """Whether the cache trusts this signing key's public half (so what it signs needs no check)."""
    if signing_key is None or public_keys is None:
        return False
    try:
        return as_trusted(public_keys).get(key_id(signing_key.public_key())) is not None
    except Exception:  # noqa: BLE001 - not an Ed25519 pair: check every signature
        return False


def _reasons(names: list[str], fits: list[str], fit_view: dict, failed_view: dict, unresolvable_view: dict,
             failed: dict[str, str], unresolvable: dict[str, str], asked=None) -> None:
    """Fill ``failed`` and ``unresolvable`` for the ``names`` not in ``fits``. Few nodes fail in a
    large cluster: walk those (against ``asked``, the names as a set or a kept list's positions)
    rather than every name, unless the counts show a name the fleet does not know."""
    if len(failed_view) + len(unresolvable_view) < len(names) // 4:
        asked = set(names) if asked is None else asked
        for view, out in ((failed_view, failed), (unresolvable_view, unresolvable)):
            for name, reason in view.items():
                if name in asked:
                    out[name] = reason
        if len(fits) + len(failed) + len(unresolvable) == len(names):
            return
        failed.clear()
        unresolvable.clear()
    for name in filterfalse(fit_view.__contains__, names):
        if name in unresolvable_view:
            unresolvable[name] = unresolvable_view[name]
        else:
            failed[name] = failed_view.get(name, "node not (yet) known to tessera-extender")


def _wait_message(waits: dict[str, str]) -> str:
    """The filter's error when only the per-shape rule keeps a pod off the nodes: each node and why."""
    shown = "; ".join(f"{node}: {reason}" for node, reason in sorted(waits.items())[:3])
    more = f" (and {len(waits) - 3} more nodes)" if len(waits) > 3 else ""
    return f"retry after back-off: every node that fits is waiting for an allocation: {shown}{more}"


class BadRequest(ValueError):
    """An input the verb cannot act on; answered as HTTP 400 with this message where the reply has no
    ``Error`` field."""


class ExtenderVerbs:
    """filter, prioritize, bind and preempt over one cache."""

    def __init__(self, cache: ClusterCache, api: KubeApi | None, signing_key, ctx: PolicyContext,
                 metrics: ExtenderMetrics, workload_label: str = "",
                 is_leader: Callable[[], bool] = lambda: True, warmer: ModelWarmer | None = None,
                 pending: PendingPods | None = None, filter_best_nodes: int = 0,
                 dra: DraScorer | None = None) -> None:
        self.cache = cache
        self.dra = dra  # scores the nodes of pods whose GPUs come from Tessera's DRA claims (prioritize_dra)
        self._dra_observed: Newest[str, None] = Newest(RECENT_REQUESTS)  # pod UIDs whose shape the model has
        self.filter_best_nodes = filter_best_nodes  # 0: filter answers every node that fits
        self.pending = pending
        self.warmer = warmer
        self.api = api
        self.signing_key = signing_key
        self.ctx = ctx
        self.metrics = metrics
        self.workload_label = workload_label
        self.is_leader = is_leader
        self._recent: Newest[str, tuple[str, PodRequest]] = Newest(RECENT_REQUESTS)  # uid -> (resourceVersion, request)
        self._recent_lock = threading.Lock()
        self._own_key = _same_key(signing_key, cache.public_key)
        self._key_id = key_id(signing_key.public_key()) if signing_key is not None else ""
        self._lists = NameLists()  # node-name lists seen again (guarded by the cache lock)
        self._spellings = Spellings()  # node-name arrays seen again, by their bytes
        self._passed: dict[str, tuple] = {}  # pod UID -> (kept list, fit mask, fits) of its last filter

    def _decide(self, verb: str, outcome: str, reason: str) -> None:
        self.metrics.decisions.labels(verb, outcome, reason).inc()

    def _request(self, pod: dict) -> PodRequest:
        """The request of a pod in a filter, prioritize or preempt body, parsed once per pod UID and
        resourceVersion (the verbs of one scheduling cycle read the same pod). ``bind`` never reads it:
        a body says what its sender wants, not what the pod asks."""
        meta = pod.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if uid and version:
            with self._recent_lock:
                kept = self._recent.get(uid)
            if kept is not None and kept[0] == version:
                return kept[1]
        request = pod_request(pod, self.workload_label)
        resolve_policy(request, None, self.ctx)
        if request.uid:
            with self._recent_lock:
                self._recent.put(request.uid, (version or "", request))
        return request

    def _extender_args(self, body: bytes) -> wire.ExtenderArgs:
        """filter's and prioritize's input. A node-name array sent before (kube-scheduler sends the same
        names pod after pod) is recognised by its bytes, and only the pod is decoded."""
        split = wire.split_node_names(body)
        if split is not None:
            head, raw = split
            names = self._spellings.names(raw)
            if names is not None:
                args = wire.extender_args_known(head, names)
                if args is not None:
                    return args
        args = wire.extender_args(wire.decode(body))
        if split is not None and wire.extender_args_known(head, args.node_names) is not None:
            self._spellings.remember(raw, args.node_names)  # the split was the real NodeNames member
        return args

    # -- filter ----------------------------------------------------------------------------------

    def filter(self, body: bytes) -> dict:
        try:
            args = self._extender_args(body)
        except wire.WireError as exc:
            self._decide("filter", "error", "bad_request")
            return wire.filter_result(error=str(exc))
        names = args.node_names
        try:
            request = self._request(args.pod)
        except (RequestError, PlacementError) as exc:
            self._decide("filter", "refused", "bad_pod_request")
            return wire.filter_result([], {}, {n: str(exc) for n in names})
        amounts = ask_amounts(request)
        cache = self.cache
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        blocked: dict[str, str] = {}
        with cache.lock:
            fit_view, failed_view, unresolvable_view = filter_view(request, cache.fleet)
            for node in cache.pending:  # the per-shape rule: few nodes, checked apart
                if node in fit_view:
                    reason = cache.blocked(node, amounts)
                    if reason is not None:
                        blocked[node] = reason
            kept = self._lists.find(names)
            fits_json = None
            if kept is not None:  # the same names as before: answers by position, only changed nodes again
                mask = kept.answers("filter|" + request.key, cache.fleet, fit_view, fit_view.__contains__)
                fits = list(compress(kept.names, mask))
                if kept.encoded is None:
                    kept.encoded = wire.names_json(kept.names)
                fits_json = compress(kept.encoded, mask)
            else:
                fits = list(filter(fit_view.__contains__, names))  # in the order given, no Python step per node
            if len(fits) < len(names):
                _reasons(names, fits, fit_view, failed_view, unresolvable_view, failed, unresolvable,
                         kept.pos if kept is not None else None)
                if cache.dra_nodes and dra_request(request):
                    passed = pass_dra_nodes(cache.dra_nodes, names, fits, failed, unresolvable)
                    if passed is not None:  # answered afresh: no kept positions cover them
                        fits, fits_json, kept = passed, None, None
            if self.cache.expected.nodes:
                self._keep_off_expected(request.name, amounts, fits, blocked)
            if blocked:
                asked = set(fits)
                waits = {n: r for n, r in blocked.items() if n in asked}
                failed.update(waits)
                fits = list(filterfalse(blocked.__contains__, fits))
                fits_json = None
                if not fits and waits:
                    # Only a wait for an allocation keeps the pod off every node. Answered as an error,
                    # not as failed nodes: kube-scheduler retries a pod that an error sent back after
                    # its back-off (1 to 10 s), while one its plugins or an extender found
                    # unschedulable waits for an event that may help it, and the device plugin's
                    # allocation (an annotation on another pod) is none: up to 5 minutes.
                    self._decide("filter", "no_fit", "wait_for_allocation")
                    return wire.filter_result(error=_wait_message(waits))
            if 0 < self.filter_best_nodes < len(fits):
                fits = self._best_of(request, fits, None if blocked else kept, mask if kept is not None else None)
                fits_json = None
                self.cache.expected.expect(request.name, fits, amounts, time.monotonic())
            elif not blocked and kept is not None and request.uid:  # prioritize most likely gets these fits
                self._passed[request.uid] = (kept, list(mask), fits)  # a copy: the kept mask moves on
                if len(self._passed) > RECENT_FILTERS:
                    self._passed.pop(next(iter(self._passed)))
            body = wire.filter_result_bytes(fits, failed, unresolvable, fits_json)
        self._decide("filter", "fit" if fits else "no_fit", "")
        return body

    def _best_of(self, request: PodRequest, fits: list[str], kept, mask) -> list[str]:
        """The ``filter_best_nodes`` of ``fits`` the placement policy scores best, in the order given
        (ties go to the earlier: kube-scheduler starts each pod's list where the last one stopped).
        ``kept`` and ``mask``: ``fits`` are the kept list's positions where ``mask`` is true."""
        if kept is not None and mask is not None:
            scores = node_scores(request, self.cache.fleet, self.ctx, fits, kept, mask)
        else:
            scores = node_scores(request, self.cache.fleet, self.ctx, fits)
        ids, score_of_id = scores.ids, scores.score_of_id
        best = heapq.nlargest(self.filter_best_nodes, range(len(ids)), key=lambda i: score_of_id[ids[i]])
        return [scores.names[i] for i in sorted(best)]

    def _keep_off_expected(self, pod: str, amounts: frozenset, fits: list[str], blocked: dict[str, str]) -> None:
        """Add to ``blocked`` the nodes of ``fits`` that filter answered for another pod asking the same
        amounts, whose bind has not arrived (``expectations``), as long as one of ``fits`` remains."""
        expected = self.cache.expected
        asked = set(fits)
        held = expected.blocked([n for n in expected.nodes if n in asked and n not in blocked], pod, amounts,
                                time.monotonic())
        if held and any(n not in blocked and n not in held for n in fits):
            blocked.update(held)

    # -- prioritize ------------------------------------------------------------------------------

    def prioritize(self, body: bytes) -> bytes:
        try:
            args = self._extender_args(body)
            request = self._request(args.pod)
        except (wire.WireError, RequestError, PlacementError) as exc:
            self._decide("prioritize", "error", "bad_request")
            raise BadRequest(str(exc)) from None
        names = args.node_names
        fleet = self.cache.fleet
        with self.cache.lock:
            if self.warmer is not None:
                self.warmer.seen(request)
            passed = self._passed.get(request.uid) if request.uid else None
            if passed is not None and passed[2] == names:
                # The nodes this pod's filter passed, as it answered them: the whole kept list is scored
                # by position (only changed nodes again) and the passed positions taken, in C.
                kept, mask, _ = passed
                scores = node_scores(request, fleet, self.ctx, names, kept, mask)
                if kept.prefixes is None:
                    kept.prefixes = wire.host_prefixes(kept.names)
                prefixes = list(compress(kept.prefixes, mask))
            else:
                # A short list (a filter that answered its best nodes) is scored afresh, not kept: it would
                # push out the long lists that kube-scheduler sends pod after pod.
                kept = self._lists.find(names) if len(names) > SHORT_LIST else None
                scores = node_scores(request, fleet, self.ctx, names, kept)
                prefixes = None
                if kept is not None:
                    if kept.prefixes is None:
                        kept.prefixes = wire.host_prefixes(kept.names)
                    prefixes = kept.prefixes
            body = wire.priority_list_ids(scores.names, scores.ids, scores.score_of_id, prefixes)
        self._decide("prioritize", "scored", "")
        return body

    def prioritize_dra(self, body: bytes) -> bytes:
        """Scores for a pod without Tessera's extended resources (kube-scheduler asks the extender's
        second entry, which manages none): DRA nodes by the pod's Tessera claims under its placement
        policy (``extender.drascoring``), every other node 0. A pod this entry does not score (DRA
        scoring off, no claims, Tessera's extended resources, which ``prioritize`` scores, claims the
        scorer does not model) gets an empty list: no node gains or loses anything by this entry."""
        if self.dra is None:
            self._decide("prioritize_dra", "not_scored", "off")
            return b"[]"
        try:
            args = self._extender_args(body)
        except wire.WireError as exc:
            self._decide("prioritize_dra", "error", "bad_request")
            raise BadRequest(str(exc)) from None
        names = args.node_names
        if not (args.pod.get("spec") or {}).get("resourceClaims"):
            self._decide("prioritize_dra", "not_scored", "no_claims")
            return b"[]"
        request, reason = None, ""
        try:
            parsed = self._request(args.pod)   # its policy resolved there
            if parsed.asks:
                raise NotScored("the pod asks for Tessera's extended resources: prioritize scores it")
            request = dra_pod_request(args.pod, self.dra.book, self.workload_label, parsed)
        except (NotScored, RequestError, PlacementError) as exc:
            reason = str(exc)
        if request is None:
            self._decide("prioritize_dra", "not_scored", "unmodelled")
            log.debug("dra_pod_not_scored", pod=(args.pod.get("metadata") or {}).get("name"), reason=reason)
            return b"[]"
        with self.cache.lock:
            self._observe_once(request)
            scores = self.dra.scores(request, self.cache.fleet, self.ctx, names)
        self._decide("prioritize_dra", "scored", "")
        return wire.priority_list(scores)

    def _observe_once(self, request: PodRequest) -> None:
        """Count a DRA pod's shape in the learned fragmentation model once (no bind of this extender
        sees it). Call with the cache lock held."""
        shapes = self.ctx.shapes
        if not request.uid or request.uid in self._dra_observed or not hasattr(shapes, "observe"):
            return
        self._dra_observed.put(request.uid, None)
        shapes.observe(request)

    # -- bind ------------------------------------------------------------------------------------

    def bind(self, body: bytes) -> dict:
        t0 = time.perf_counter()
        try:
            args = wire.binding_args(wire.decode(body))
        except wire.WireError as exc:
            self._decide("bind", "error", "bad_request")
            return wire.binding_result(str(exc))
        key = f"{args.pod_namespace}/{args.pod_name}"
        if not self.is_leader():
            self._decide("bind", "error", "not_leader")
            return wire.binding_result("tessera-extender: this replica is not the leader; retry")
        try:
            pod, request = self._bind_request(args)
            dra_problem = self._dra_problem(args, pod, request)
        except (RequestError, PlacementError) as exc:
            self._decide("bind", "error", "bad_pod_request")
            return wire.binding_result(f"{key}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the API server could not tell us the pod
            self._decide("bind", "error", "api_error")
            return wire.binding_result(f"{key}: cannot read the pod: {error_text(exc)}")
        cache = self.cache
        with cache.lock:
            cache.expected.settle(key)  # from here the cache's own hold (or none) speaks for this pod
            node = cache.fleet.get(args.node)
            through_dra = node is not None and args.node in cache.dra_nodes and dra_request(request)
            reason = None
            if node is None:
                reason = f"node {args.node} is not known to tessera-extender"
            elif cache.inflight(key):
                reason = "a bind of this pod is already in flight"
            elif cache.bound_to(key):
                reason = f"the pod is already bound to {cache.bound_to(key)}"
            elif through_dra:  # kube-scheduler's DRA allocator fit it; the claim it allocated must be named
                reason = dra_problem
            else:
                misfit = node_fit(request, node) if key not in node.pods else None
                reason = misfit.reason if misfit else cache.blocked(args.node, ask_amounts(request))
            if reason is None and through_dra:  # the GPUs are the claim's; the books hold CPU and memory
                placement = Placement(pod=key, node=args.node, containers=(), cpu_milli=request.cpu_milli,
                                      memory_bytes=request.memory_bytes, workload=request.workload)
            elif reason is None:
                try:
                    scratch = node
                    if key in node.pods:  # a stale hold of this pod from an earlier failed bind
                        scratch = node.copy()
                        scratch.release(key)
                    placement = choose_gpus(request, scratch, None, self.ctx)
                except PlacementError as exc:
                    reason = str(exc)
            if reason is not None:
                self._decide("bind", "refused", "no_fit")
                log.info("bind_refused", pod=key, node=args.node, reason=reason)
                return wire.binding_result(f"{key} does not fit on {args.node} now: {reason}")
            cache.assume(placement, request, args.pod_uid, through_dra=through_dra)
            shapes = self.ctx.shapes
            if hasattr(shapes, "observe"):
                shapes.observe(request)
        try:
            if through_dra:  # no assignment: the DRA driver signs the claim's grant at prepare
                self.api.bind(args.pod_namespace, args.pod_name, args.pod_uid, args.node)
            else:
                doc = replace(assignment_of(placement, request, args.pod_uid), key_id=self._key_id)
                value = sign_assignment(doc, self.signing_key)
                if self._own_key:  # its watch events need no signature check: this replica just signed it
                    cache.trust(value, args.pod_uid, doc, placement)
                # One write: the API server sets nodeName and the assignment together, so no pod is ever
                # bound without its assignment, nor carries one for a bind that failed.
                self.api.bind(args.pod_namespace, args.pod_name, args.pod_uid, args.node,
                              annotations={ANNOTATION_ASSIGNMENT: value})
        except Exception as exc:  # noqa: BLE001 - any failure: give the hold back and say why
            cache.forget(key)
            self._decide("bind", "error", "api_error")
            log.warning("bind_failed", pod=key, node=args.node, reason=error_text(exc)[:300])
            return wire.binding_result(f"{key}: binding to {args.node} failed: {error_text(exc)}")
        cache.landed(key)
        if self.warmer is not None:
            self.warmer.poke()
        self._decide("bind", "bound", "")
        log.info("pod_bound", pod=key, node=args.node, through="dra" if through_dra else "device-plugin",
                 gpus=[g.gpu_uuid for g in placement.grants], ms=round((time.perf_counter() - t0) * 1000, 2))
        return wire.binding_result()

    def _bind_request(self, args: wire.BindingArgs, fresh: bool = False) -> tuple[dict, PodRequest]:
        """The pod being bound and its request, as the API server has it: from the watch when it has
        delivered the pod (unless ``fresh``), else read now. Never from a filter, prioritize or preempt
        body (or the memo they fill), which whoever reaches the verb port writes."""
        pod = self.pending.get(args.pod_uid, args.pod_namespace, args.pod_name) if self.pending and not fresh else None
        if pod is None:
            pod = self.api.get_pod(args.pod_namespace, args.pod_name)
        if (pod.get("metadata") or {}).get("uid") != args.pod_uid:
            raise PlacementError(f"pod UID is not {args.pod_uid} (deleted and created again?)")
        if (pod.get("spec") or {}).get("nodeName"):
            raise PlacementError(f"the pod is already bound to {pod['spec']['nodeName']}")
        request = pod_request(pod, self.workload_label)
        resolve_policy(request, None, self.ctx)
        return pod, request

    def _dra_problem(self, args: wire.BindingArgs, pod: dict, request: PodRequest) -> str | None:
        """For a pod that asks whole GPUs only: why its status does not (yet) name the claim kube-scheduler
        allocated for them, else None; what bind to a node that serves them through DRA requires.
        kube-scheduler writes that status just before it binds, so where the node is one, a copy from the
        watch without it is read again from the API server."""
        if not dra_request(request):
            return None
        problem = claim_status_problem(pod, request)
        if problem is not None and self.pending is not None and args.node in self.cache.dra_nodes:
            pod, request = self._bind_request(args, fresh=True)
            problem = claim_status_problem(pod, request)
        return problem

    # -- preempt ---------------------------------------------------------------------------------

    def preempt(self, body: bytes) -> dict:
        """Keep the nodes where evicting the proposed victims would let the pod fit."""
        try:
            args = wire.preemption_args(wire.decode(body))
            request = self._request(args.pod)
        except (wire.WireError, RequestError, PlacementError) as exc:
            self._decide("preempt", "error", "bad_request")
            raise BadRequest(str(exc)) from None
        kept: dict[str, tuple[list[str], int]] = {}
        cache = self.cache
        with cache.lock:
            by_uid = cache.keys_by_uid()
            for name, (uids, pdb) in args.victims.items():
                node = cache.fleet.get(name)
                if node is None:
                    continue
                if name in cache.dra_nodes and dra_request(request):
                    kept[name] = (uids, pdb)  # kube-scheduler's DRA allocator found the fit with these victims gone
                    continue
                trial = node.copy()
                for uid in uids:
                    victim = by_uid.get(uid)
                    if victim is not None and victim in trial.pods:
                        trial.release(victim)
                if node_fit(request, trial) is None:
                    kept[name] = (uids, pdb)
        self._decide("preempt", "kept" if kept else "none", "")
        log.info("preempt_answered", pod=request.name, proposed=len(args.victims), kept=len(kept))
        return wire.preemption_result(kept)
