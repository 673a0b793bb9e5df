"""Incremental raw scores over a ``Fleet``, as ``prioritize`` keeps them between calls.

One view per (policy, model version, request shape, workload) holds each node's raw score as a small
integer id into the view's list of distinct raw scores (id 0 is None: the pod does not fit). Nodes
changed since the view's clock are scored again when the view is next used; every other node costs
one lookup. Ids make the per-call work over thousands of nodes C-level: a set of small integers to
find the distinct scores present, and list indexing to turn ids into 0..10 scores or JSON fragments.
Raw scores repeat across nodes (nodes in one state share them), so the distinct list stays short; it
is started again when it outgrows the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from extender.fleet import Fleet
from extender.namelists import NameList
from extender.nodestate import NodeState

Scorer = Callable[[NodeState], "tuple | None"]


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


def score_ids(fleet: Fleet, key: str, names: Sequence[str], scorer: Scorer,
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


def intern_all(raws: list) -> tuple[list[int], list]:
    """(ids, distinct) for raw scores computed afresh (policies whose scores are not kept)."""
    distinct: list = [None]
    intern = _interner(distinct, {None: 0})
    return [intern(raw) for raw in raws], distinct


def scale_ids(ids: list[int], distinct: list, table_of: Callable[[list], dict]) -> list[int]:
    """Score 0..10 per raw score id (only ids in ``ids`` are scaled; the others read 0), with
    ``table_of`` mapping the distinct raw scores present to their scores."""
    present = set(ids)
    table = table_of([distinct[i] for i in present])
    out = [0] * len(distinct)
    for i in present:
        out[i] = table[distinct[i]]
    return out
