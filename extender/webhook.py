"""The admission webhook (AdmissionReview v1, ``POST /mutate``): on pod CREATE it

- strips ``tessera.io/*`` annotations a user wrote (the ledger is written by Tessera only), except
  ``tessera.io/policy``, the user's placement policy, which it keeps when it names a known policy and
  refuses otherwise;
- for pods that ask for Tessera resources: sets ``schedulerName`` to Tessera's scheduler when the pod
  names none or one of the routed schedulers (``default-scheduler``; a pod naming another scheduler,
  Volcano's say, keeps it and is still checked), and completes ``nvidia.com/mps-memory`` from
  ``nvidia.com/mps-core`` as the proportional share of the SMALLEST MPS card in the cluster (core/100
  of its GiB, rounded down, at least 1), so the request fits wherever the pod lands and the kubelet's
  counts and ResourceQuota stay true;
- for pods whose ResourceClaims (or claim templates) ask Tessera's DeviceClasses: sets ``schedulerName``
  the same way, so kube-scheduler's DRA allocator places them under Tessera's node scores
  (``extender.drascoring``); claims or templates the extender has not seen yet do not count;
- refuses malformed requests (``mps-memory`` without ``mps-core``, ``mps-core`` over 100 not in
  hundreds, ``mps-memory`` larger than any MPS card in the cluster, ...) with the reason
  ``kubectl apply`` shows.

On pod UPDATE (a PUT or PATCH of the pod, not of its status) it refuses any change to a ``tessera.io/*``
annotation, added, changed or removed, unless the caller (``request.userInfo.username``) is one of
Tessera's own identities (``ledger_writers``: the device plugin's and the extender's ServiceAccounts).
A pod owner may otherwise rewrite the extender's books with a forged assignment.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable

from tessera import ANNOTATION_POLICY, ANNOTATION_PREFIX, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.log import get_logger

from extender.placement import POLICIES
from tessera.podrequest import KIND_MPS, KIND_MPS_WHOLE, RequestError, pod_request
from extender.verbs import BadRequest

log = get_logger("extender")
DEFAULT_SCHEDULER = "default-scheduler"  # what the API server writes where a pod names no scheduler
LABEL_DRA_SCORING = "tessera.io/dra-scoring"  # "off" on a pod: its DRA claims never route it (so does deploy/'s objectSelector)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class PodAdmission:
    """Reviews pod creations and updates; ``cards()`` gives (smallest, largest) MPS card GiB in the cluster,
    or None. ``routed_schedulers``: the schedulerName values replaced by ``scheduler_name`` (an empty one
    counts as ``default-scheduler``); ``ledger_writers``: the users that may change ``tessera.io/*``
    annotations of an existing pod; ``dra_asks(pod, namespace)``: whether a pod without Tessera's extended
    resources names claims of Tessera's DeviceClasses (``DraBook.asks_tessera``), routed the same way so
    the extender scores its nodes."""

    def __init__(self, scheduler_name: str, cards: Callable[[], tuple[int, int] | None], *,
                 routed_schedulers: Iterable[str] = (DEFAULT_SCHEDULER,), ledger_writers: Iterable[str] = (),
                 dra_asks: Callable[[dict, str], bool] | None = None) -> None:
        self.scheduler_name = scheduler_name
        self.dra_asks = dra_asks
        self.cards = cards
        self.routed_schedulers = frozenset(s or DEFAULT_SCHEDULER for s in routed_schedulers)
        self.ledger_writers = frozenset(ledger_writers)

    def __call__(self, body: bytes) -> dict:
        try:
            review = json.loads(body)
            request = review["request"]
            uid = request["uid"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest("body is not an AdmissionReview with a request.uid") from None
        response = self.review(request)
        response["uid"] = uid
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def review(self, request: dict) -> dict:
        """The AdmissionResponse (without uid) for one request."""
        pod = request.get("object")
        kind = (request.get("kind") or {}).get("kind")
        if kind == "Binding" and request.get("operation") == "CREATE":
            return self._review_binding(request)
        if kind != "Pod" or not isinstance(pod, dict):
            return {"allowed": True}
        meta = pod.get("metadata") or {}
        name = f"{request.get('namespace') or meta.get('namespace', '')}/{meta.get('name') or meta.get('generateName', '')}"
        if request.get("operation") == "CREATE":
            return self._review_create(pod, meta, name, request.get("namespace") or meta.get("namespace", ""))
        if request.get("operation") == "UPDATE":
            return self._review_update(request, meta, name)
        return {"allowed": True}

    def _review_create(self, pod: dict, meta: dict, name: str, namespace: str) -> dict:
        """Strip the user's tessera.io/* annotations, route and complete the pod, or refuse it."""
        patch: list[dict] = []
        annotations = meta.get("annotations") or {}
        stripped = [k for k in annotations if k.startswith(ANNOTATION_PREFIX) and k != ANNOTATION_POLICY]
        policy = annotations.get(ANNOTATION_POLICY)
        if policy is not None and policy not in POLICIES:
            reason = f"annotation {ANNOTATION_POLICY}: {policy!r} is not one of {', '.join(POLICIES)}"
            log.info("pod_refused", pod=name, reason=reason)
            return _deny(reason)
        patch += [{"op": "remove", "path": f"/metadata/annotations/{_escape(k)}"} for k in stripped]
        try:
            preq = pod_request(pod)
        except RequestError as exc:
            log.info("pod_refused", pod=name, reason=str(exc))
            return _deny(str(exc))
        if preq.asks:
            cards = self.cards()
            try:
                patch += self._complete(pod, preq, cards)
            except RequestError as exc:
                log.info("pod_refused", pod=name, reason=str(exc))
                return _deny(str(exc))
            patch += self._route(pod, name)
        elif (self.dra_asks is not None and (meta.get("labels") or {}).get(LABEL_DRA_SCORING) != "off"
              and self.dra_asks(pod, namespace)):
            patch += self._route(pod, name)
        if stripped:
            log.info("annotations_stripped", pod=name, keys=stripped)
        if not patch:
            return {"allowed": True}
        return {"allowed": True, "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(patch).encode()).decode()}

    def _route(self, pod: dict, name: str) -> list[dict]:
        """The patch that sends the pod to Tessera's scheduler, where it names a routed one."""
        named = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        if named in self.routed_schedulers and named != self.scheduler_name:
            return [{"op": "add", "path": "/spec/schedulerName", "value": self.scheduler_name}]
        if named != self.scheduler_name:
            log.info("pod_left_to_its_scheduler", pod=name, scheduler=named)
        return []

    def _review_update(self, request: dict, meta: dict, name: str) -> dict:
        """Allowed unless a caller other than Tessera adds, changes or removes a ``tessera.io/*`` annotation."""
        new = _mapping(_mapping(meta).get("annotations"))
        before = _mapping(_mapping(_mapping(request.get("oldObject")).get("metadata")).get("annotations"))
        changed = sorted(k for k in set(new) | set(before)
                         if str(k).startswith(ANNOTATION_PREFIX) and new.get(k) != before.get(k))
        user = str(_mapping(request.get("userInfo")).get("username") or "")
        if not changed or user in self.ledger_writers:
            return {"allowed": True}
        reason = (f"{', '.join(changed)}: tessera.io/* annotations of an existing pod are written by Tessera "
                  f"only; {user or 'an anonymous user'} may not add, change or remove them")
        log.warning("annotation_change_refused", pod=name, user=user, keys=changed)
        return _deny(reason)

    def _review_binding(self, request: dict) -> dict:
        """A Binding copies its annotations onto the pod: only Tessera may bind with ``tessera.io/*`` ones
        (the extender's signed assignment), or anyone who may create bindings could write the ledger."""
        binding = _mapping(request.get("object"))
        keys = sorted(k for k in _mapping(_mapping(binding.get("metadata")).get("annotations"))
                      if str(k).startswith(ANNOTATION_PREFIX))
        user = str(_mapping(request.get("userInfo")).get("username") or "")
        if not keys or user in self.ledger_writers:
            return {"allowed": True}
        name = f"{request.get('namespace', '')}/{request.get('name') or _mapping(binding.get('metadata')).get('name', '')}"
        log.warning("annotation_change_refused", pod=name, user=user, keys=keys, via="binding")
        return _deny(f"{', '.join(keys)}: a Binding that writes tessera.io/* annotations is Tessera's alone; "
                     f"{user or 'an anonymous user'} may not bind with them")

    def _complete(self, pod: dict, preq, cards: tuple[int, int] | None) -> list[dict]:
        patch = []
        containers = (pod.get("spec") or {}).get("containers") or []
        for i, (c, creq) in enumerate(zip(containers, preq.containers)):
            ask = creq.ask
            if ask is None or ask.kind not in (KIND_MPS, KIND_MPS_WHOLE):
                continue
            gpus = ask.count if ask.kind == KIND_MPS_WHOLE else 1
            if ask.memory_gib is not None:
                if cards is not None and ask.memory_gib > gpus * cards[1]:
                    raise RequestError(f"container {creq.name!r}: {RESOURCE_MPS_MEMORY}: {ask.memory_gib} GiB is "
                                       f"more than the largest MPS GPU in the cluster has ({cards[1]} GiB)")
                continue
            if cards is None:
                raise RequestError(f"container {creq.name!r}: {RESOURCE_MPS_CORE} without {RESOURCE_MPS_MEMORY}, and "
                                   "no MPS GPU in the cluster to size the memory share from; add "
                                   f"{RESOURCE_MPS_MEMORY} (GiB)")
            # Whole GPUs: all their memory; a share: core/100 of the smallest MPS card, so it fits anywhere.
            gib = gpus * cards[0] if ask.kind == KIND_MPS_WHOLE else max(1, ask.core * cards[0] // 100)
            resources = c.get("resources") or {}
            for part in ("limits", "requests"):
                if RESOURCE_MPS_CORE in (resources.get(part) or {}):
                    patch.append({"op": "add", "path": f"/spec/containers/{i}/resources/{part}/"
                                                       f"{_escape(RESOURCE_MPS_MEMORY)}", "value": str(gib)})
        return patch


def _mapping(value: object) -> dict:
    """``value`` where it is a JSON object, else an empty one (a review's parts are read defensively)."""
    return value if isinstance(value, dict) else {}


def _deny(message: str) -> dict:
    return {"allowed": False, "status": {"code": 403, "reason": "Forbidden", "message": message}}
