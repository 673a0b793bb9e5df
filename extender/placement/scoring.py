"""Node scores 0..10 for a pod, by policy: ``node_scores`` (the extender's prioritize) and
``prioritize`` (the same scores as (node, score) pairs, for a list of nodes or a fleet).

Scale: kube-scheduler takes extender scores 0..10 (integers) and picks among the top at random. Each
policy computes a raw score per node (``policies.SCORERS``: a tuple, higher is better). Nodes whose raw
score equals the best get 10, so the scheduler's random pick is among truly equal nodes; the others get
the first component min-max normalised onto 0..9 (rounded down). A node where the pod does not fit
gets 0.

Kept between calls: one view per (policy, model version, request shape, workload) holds each node's
raw score as a small integer id into the view's list of distinct raw scores (id 0 is None: the pod
does not fit). Nodes changed since the view's clock are scored again when the view is next used; every
other node costs one lookup. Ids make the per-call work over thousands of nodes C-level: a set of
small integers to find the distinct scores present, and list indexing to turn ids into 0..10 scores or
JSON fragments. Raw scores repeat across nodes (nodes in one state share them), so the distinct list
stays short; it is started again when it outgrows the fleet. The fragmentation policy's raw scores on
models that pods name are kept unpriced (``scarcity.Priced``) and priced per call, for the distinct
ones among the nodes asked for, at the models' pressures then (``scarcity.price_distinct``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import NamedTuple

from extender.placement.fit import node_fit
from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel
from extender.placement.namelists import NameList
from extender.placement.nodestate import NodeState
from extender.placement.policies import MODEL_POLICIES, SCORERS, PolicyContext, resolve_policy
from extender.placement.scarcity import Priced, model_pressures, price_distinct, priced
from tessera.podrequest import PodRequest

MAX_SCORE = 10
_MISSING = object()

Scorer = Callable[[NodeState], "tuple | None"]


class NodeScores(NamedTuple):
    """Scores of ``names``, in the form kube-scheduler's answer is encoded from without a Python step
    per node: node ``names[i]`` scores ``score_of_id[ids[i]]``; ``distinct[ids[i]]`` is its raw score
    (None: the pod does not fit). Shared with the fleet's kept views: read, never change."""

    names: Sequence[str]
    ids: list[int]
    distinct: list
    score_of_id: list[int]

    def scores(self) -> list[int]:
        """Score 0..10 per name, in order."""
        return list(map(self.score_of_id.__getitem__, self.ids))

    def pairs(self) -> list[tuple[str, int]]:
        """(node, score 0..10) per name, in order."""
        return list(zip(self.names, self.scores()))


def node_scores(request: PodRequest, fleet: Fleet, ctx: PolicyContext | None = None,
                names: Sequence[str] | None = None, kept: NameList | None = None,
                mask: list | None = None, policy: str | None = None) -> NodeScores:
    """Scores 0..10 of ``names`` of ``fleet`` (all its nodes by default) for ``request``, under
    ``policy`` (else the pod's annotation, else the cluster default); see the module docstring.

    ``kept``: ``names`` recognised (``NameLists.find``): raw scores come by position, only changed
    nodes scored again. ``mask``: with ``kept``, score only the kept positions where it is true (the
    nodes this pod's filter passed); ``names`` are then those nodes, in kept order. Scores are scaled
    over the nodes asked for. Call with the lock that guards the fleet.
    """
    ctx = ctx or PolicyContext()
    policy = resolve_policy(request, policy, ctx)
    if mask is not None and kept is not None:
        _, ids, distinct = _fleet_ids(request, fleet, policy, ctx, kept.names, kept)
        ids = list(compress(ids, mask))
    else:
        names, ids, distinct = _fleet_ids(request, fleet, policy, ctx, names, kept)
    return NodeScores(names, ids, distinct, _scale_ids(ids, distinct))


def prioritize(request: PodRequest, nodes: Fleet | Iterable[NodeState], policy: str | None = None,
               ctx: PolicyContext | None = None, names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(node, score 0..10) for each node, in the order given; see the module docstring for the scale.

    With a ``Fleet``, ``names`` says which of its nodes to score (all by default), and raw scores are
    kept per policy and request shape, recomputed only for nodes changed since the last call
    (``node_scores``). A list of nodes keeps raw scores in each node's own cache.
    """
    if isinstance(nodes, Fleet):
        return node_scores(request, nodes, ctx, names, policy=policy).pairs()
    ctx = ctx or PolicyContext()
    policy = resolve_policy(request, policy, ctx)
    raw_of = SCORERS[policy]
    model = _model(policy, ctx)
    cacheable = policy != "random"
    nodes = list(nodes)
    key = _view_key(policy, model, request)
    memo = _shared_memo(policy, model, request)
    node_names: list[str] = []
    raws = []
    for node in nodes:
        cache = node.cache
        raw = cache.get(key, _MISSING) if cacheable else _MISSING
        if raw is _MISSING:
            raw = _raw(request, node, raw_of, ctx, model, memo if cacheable else None)
            if cacheable:
                cache[key] = raw
        node_names.append(node.name)
        raws.append(raw)
    pressure = _pressure(policy, model, nodes)
    if pressure is not None:
        raws = [priced(r, pressure) if type(r) is Priced else r for r in raws]
    table = _score_table(raws)
    return list(zip(node_names, map(table.__getitem__, raws)))


def _model(policy: str, ctx: PolicyContext) -> FragmentationModel | None:
    return ctx.fragmentation_model() if policy in MODEL_POLICIES else None


def _pressure(policy: str, model: FragmentationModel | None,
              nodes: Fleet | list[NodeState]) -> dict[str, float] | None:
    """For the fragmentation policy where pods name GPU models: each model's pressure now
    (``scarcity``), which prices its ``Priced`` raw scores; None otherwise."""
    if policy != "fragmentation" or model is None or not model.named_demand():
        return None
    return model_pressures(model, nodes)


def _view_key(policy: str, model: FragmentationModel | None, request: PodRequest) -> str:
    """What a raw score depends on besides the node: policy, model version, request shape, workload."""
    return f"{policy}|{model.version if model else 0}|{request.key}|" + \
        (request.workload if policy == "spread-workload" else "")


def _fleet_ids(request: PodRequest, fleet: Fleet, policy: str, ctx: PolicyContext, names: Sequence[str] | None,
               kept: NameList | None = None) -> tuple[Sequence[str], list[int], list]:
    """(names, raw score id per name, distinct raw scores by id) on a fleet."""
    raw_of = SCORERS[policy]
    model = _model(policy, ctx)
    names = fleet.names() if names is None else (kept.names if kept is not None else list(names))
    if policy == "random":
        return (names, *_intern_all([_raw(request, fleet.get(n), raw_of, ctx, model) for n in names]))
    memo = _shared_memo(policy, model, request)
    ids, distinct = _view_ids(fleet, _view_key(policy, model, request), names,
                              lambda node: _raw(request, node, raw_of, ctx, model, memo), kept,
                              by_state=memo is not None)
    pressure = _pressure(policy, model, fleet)
    if pressure is not None:
        distinct = price_distinct(distinct, ids, pressure)
    return names, ids, distinct


_SHARED: dict[str, dict] = {}  # "policy|request key" -> node state id -> raw score (state-only policies)


def _shared_memo(policy: str, model: FragmentationModel | None, request: PodRequest) -> dict | None:
    """Raw scores by node state id for this policy and request shape (None where a score reads more
    than the node's state). Keyed by strings and ints: no tuple per lookup for the collector to track."""
    if policy in MODEL_POLICIES:
        outer = model.memo() if model is not None else None
    elif policy in ("random", "spread-workload"):  # random draws; spread-workload reads workloads too
        return None
    else:
        outer = _SHARED
    if outer is None:
        return None
    key = f"{policy}|{request.key}"
    inner = outer.get(key)
    if inner is None:
        if len(outer) > 4096:
            outer.clear()
        inner = outer[key] = {}
    return inner


def _raw(request: PodRequest, node: NodeState | None, raw_of, ctx: PolicyContext, model,
         memo: dict | None = None) -> tuple | None:
    if node is None:
        return None
    if memo is not None:
        sid = node.state_id()
        raw = memo.get(sid, _MISSING)
        if raw is not _MISSING:
            return raw
    raw = None if node_fit(request, node) is not None else raw_of(request, node, ctx, model)
    if memo is not None:
        if len(memo) > 200_000:
            memo.clear()
        memo[sid] = raw
    return raw


def _score_table(raws: Iterable) -> dict:
    """Score 0..10 for each distinct raw score (None: 0); see the module docstring for the scale."""
    distinct = set(raws)
    distinct.discard(None)
    table: dict = {None: 0}
    if not distinct:
        return table
    best = max(distinct)
    top = best[0]
    lo = min([r[0] for r in distinct])
    span = top - lo
    scale = (MAX_SCORE - 1) / span if span > 0 else 0.0
    below = MAX_SCORE - 1
    for raw in distinct:
        if raw == best:
            table[raw] = MAX_SCORE
        else:
            score = int((raw[0] - lo) * scale) if span > 0 else below
            table[raw] = score if score < below else below
    return table


# -- raw score ids kept in a fleet view ------------------------------------------------------------

def _fresh(view: dict) -> None:
    view["ids"] = {}
    view["distinct"] = [None]
    view["id_of"] = {None: 0}


def _interner(distinct: list, id_of: dict) -> Callable[[object], int]:
    """A raw score's id in ``distinct`` (its index), appended on first sight; ``id_of`` is the index."""
    def intern(raw) -> int:
        rid = id_of.get(raw)
        if rid is None:
            rid = id_of[raw] = len(distinct)
            distinct.append(raw)
        return rid
    return intern


def _view_ids(fleet: Fleet, key: str, names: Sequence[str], scorer: Scorer,
              kept: NameList | None = None, by_state: bool = False) -> tuple[list[int], list]:
    """(raw score id per name, distinct raw scores by id) for ``names`` of ``fleet``, kept in the
    fleet's view ``key``; ``scorer`` gives a node's raw score (None where the pod does not fit).
    With ``kept`` (the same names, recognised), the ids come by position. ``by_state``: the score
    depends on the node's state alone, so a view built from scratch scores one node per state group.
    Call with the lock that guards the fleet; never change the ids returned."""
    view = fleet.view(key)
    changed = fleet.changed_since(view["clock"])
    fresh = changed is None or "ids" not in view or len(view["distinct"]) > 2 * len(fleet) + 1024
    if fresh:
        _fresh(view)
        changed = ()
    ids: dict[str, int] = view["ids"]
    distinct: list = view["distinct"]
    id_of: dict = view["id_of"]
    intern = _interner(distinct, id_of)
    if fresh and by_state:
        for node, group in fleet.groups():
            ids.update(dict.fromkeys(group, intern(scorer(node))))

    for name in changed:  # scored again now (few), so the common case below is one lookup each
        node = fleet.get(name)
        if node is None:
            ids.pop(name, None)
        else:
            ids[name] = intern(scorer(node))
    view["clock"] = fleet.clock
    if kept is not None:
        def id_of_name(name: str) -> int:
            rid = ids.get(name)
            if rid is None:
                node = fleet.get(name)
                rid = ids[name] = intern(scorer(node)) if node is not None else 0
            return rid

        return kept.answers("score|" + key, fleet, ids, id_of_name, ids.__getitem__), distinct
    try:
        return list(map(ids.__getitem__, names)), distinct
    except KeyError:
        pass
    for name in names:
        if name not in ids:
            node = fleet.get(name)
            ids[name] = intern(scorer(node)) if node is not None else 0
    return list(map(ids.__getitem__, names)), distinct


def _intern_all(raws: list) -> tuple[list[int], list]:
    """(ids, distinct) for raw scores computed afresh (policies whose scores are not kept)."""
    distinct: list = [None]
    intern = _interner(distinct, {None: 0})
    return [intern(raw) for raw in raws], distinct


def _scale_ids(ids: list[int], distinct: list) -> list[int]:
    """Score 0..10 per raw score id (only ids in ``ids`` are scaled; the others read 0)."""
    present = set(ids)
    table = _score_table([distinct[i] for i in present])
    out = [0] * len(distinct)
    for i in present:
        out[i] = table[distinct[i]]
    return out
