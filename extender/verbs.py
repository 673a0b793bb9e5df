"""The four extender verbs on the cache: ``filter``, ``prioritize``, ``bind``, ``preempt``. Each takes the
request body (bytes) and answers kube-scheduler's JSON as a value (``wire`` spells both); bad input
answers an error and changes nothing.

``bind`` re-checks the fit against the cache, which holds the binds in flight, under the cache lock;
chooses the GPUs; holds them at once (``ClusterCache.assume``); then, without the lock, writes the
signed assignment and POSTs the Binding. A failure gives the hold back. The lock is held only for
the check-choose-assume step, so two binds never take one share and no API call waits on it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import sign_assignment
from tessera.log import get_logger

from extender import wire
from extender.cache import ClusterCache
from extender.fit import node_fit
from extender.kubeapi import KubeApi, error_text
from extender.ledger import ask_amounts, assignment_of
from extender.metrics import ExtenderMetrics
from extender.policies import PlacementError, PolicyContext, choose_gpus, filter_nodes, prioritize, resolve_policy
from extender.request import PodRequest, RequestError, pod_request

log = get_logger("extender")
RECENT_REQUESTS = 8192


class BadRequest(ValueError):
    """An input the verb cannot act on; answered as HTTP 400 with this message where the reply has no
    ``Error`` field."""


class ExtenderVerbs:
    """filter, prioritize, bind and preempt over one cache."""

    def __init__(self, cache: ClusterCache, api: KubeApi | None, signing_key, ctx: PolicyContext,
                 metrics: ExtenderMetrics, workload_label: str = "",
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.cache = cache
        self.api = api
        self.signing_key = signing_key
        self.ctx = ctx
        self.metrics = metrics
        self.workload_label = workload_label
        self.is_leader = is_leader
        self._recent: OrderedDict[str, PodRequest] = OrderedDict()
        self._recent_lock = threading.Lock()

    def _decide(self, verb: str, outcome: str, reason: str) -> None:
        self.metrics.decisions.labels(verb, outcome, reason).inc()

    def _request(self, pod: dict) -> PodRequest:
        request = pod_request(pod, self.workload_label)
        resolve_policy(request, None, self.ctx)
        if request.uid:
            with self._recent_lock:
                recent = self._recent
                recent[request.uid] = request
                if len(recent) > RECENT_REQUESTS:
                    recent.popitem(last=False)
        return request

    # -- filter ----------------------------------------------------------------------------------

    def filter(self, body: bytes) -> dict:
        try:
            args = wire.extender_args(wire.decode(body))
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
            result = filter_nodes(request, cache.fleet)
            fit_set = set(result.fits)
            for node in cache.pending:  # the per-shape rule: few nodes, checked apart
                if node in fit_set:
                    reason = cache.blocked(node, amounts)
                    if reason is not None:
                        fit_set.discard(node)
                        blocked[node] = reason
        fits = [n for n in names if n in fit_set]
        if len(fits) < len(names):
            for name in names:
                if name in fit_set:
                    continue
                reason = blocked.get(name)
                if reason is not None:
                    failed[name] = reason
                elif name in result.unresolvable:
                    unresolvable[name] = result.unresolvable[name]
                else:
                    failed[name] = result.failed.get(name, "node not (yet) known to tessera-extender")
        self._decide("filter", "fit" if fits else "no_fit", "")
        return wire.filter_result(fits, failed, unresolvable)

    # -- prioritize ------------------------------------------------------------------------------

    def prioritize(self, body: bytes) -> bytes:
        try:
            args = wire.extender_args(wire.decode(body))
            request = self._request(args.pod)
        except (wire.WireError, RequestError, PlacementError) as exc:
            self._decide("prioritize", "error", "bad_request")
            raise BadRequest(str(exc)) from None
        with self.cache.lock:
            scores = prioritize(request, self.cache.fleet, None, self.ctx, names=args.node_names)
        self._decide("prioritize", "scored", "")
        return wire.priority_list(scores)

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
            request = self._bind_request(args)
        except (RequestError, PlacementError) as exc:
            self._decide("bind", "error", "bad_pod_request")
            return wire.binding_result(f"{key}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the API server could not tell us the pod
            self._decide("bind", "error", "api_error")
            return wire.binding_result(f"{key}: cannot read the pod: {error_text(exc)}")
        cache = self.cache
        with cache.lock:
            node = cache.fleet.get(args.node)
            reason = None
            if node is None:
                reason = f"node {args.node} is not known to tessera-extender"
            elif cache.inflight(key):
                reason = "a bind of this pod is already in flight"
            elif cache.bound_to(key):
                reason = f"the pod is already bound to {cache.bound_to(key)}"
            else:
                misfit = node_fit(request, node) if key not in node.pods else None
                reason = misfit.reason if misfit else cache.blocked(args.node, ask_amounts(request))
            if reason is None:
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
            cache.assume(placement, request, args.pod_uid)
            shapes = self.ctx.shapes
            if hasattr(shapes, "observe"):
                shapes.observe(request)
        patched = False
        try:
            doc = assignment_of(placement, request, args.pod_uid)
            self.api.patch_pod_annotations(args.pod_namespace, args.pod_name,
                                           {ANNOTATION_ASSIGNMENT: sign_assignment(doc, self.signing_key)})
            patched = True
            self.api.bind(args.pod_namespace, args.pod_name, args.pod_uid, args.node)
        except Exception as exc:  # noqa: BLE001 - any failure: give the hold back and say why
            cache.forget(key)
            if patched:
                self._unwrite(args.pod_namespace, args.pod_name)
            self._decide("bind", "error", "api_error")
            log.warning("bind_failed", pod=key, node=args.node, reason=error_text(exc)[:300])
            return wire.binding_result(f"{key}: binding to {args.node} failed: {error_text(exc)}")
        cache.landed(key)
        self._decide("bind", "bound", "")
        log.info("pod_bound", pod=key, node=args.node,
                 gpus=[g.gpu_uuid for g in placement.grants], ms=round((time.perf_counter() - t0) * 1000, 2))
        return wire.binding_result()

    def _bind_request(self, args: wire.BindingArgs) -> PodRequest:
        with self._recent_lock:
            request = self._recent.get(args.pod_uid)
        if request is not None and request.name == f"{args.pod_namespace}/{args.pod_name}":
            return request
        pod = self.api.get_pod(args.pod_namespace, args.pod_name)
        if (pod.get("metadata") or {}).get("uid") != args.pod_uid:
            raise PlacementError(f"pod UID is not {args.pod_uid} (deleted and created again?)")
        return self._request(pod)

    def _unwrite(self, namespace: str, name: str) -> None:
        try:
            self.api.patch_pod_annotations(namespace, name, {ANNOTATION_ASSIGNMENT: None})
        except Exception as exc:  # noqa: BLE001 - the pod may be gone; its stale hold is replaced on rebind
            log.warning("assignment_unwrite_failed", pod=f"{namespace}/{name}", reason=error_text(exc)[:200])

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
