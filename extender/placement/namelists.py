"""Node-name lists recognised again by content, with per-view answers kept by position.

kube-scheduler sends ``filter`` the same node names for pod after pod (every node that passed its own
checks), and ``prioritize`` the names that passed filter, often the same list again. Looking each of
thousands of freshly decoded names up in a dict costs far more in a large process than comparing the
whole list with one kept from before (a sequential compare in C). So a list seen twice is kept with
its positions, its names' JSON, and, per fleet view, the view's answer for each position (fits or
not, a raw score id), brought up to date from the fleet's change log: only changed nodes are looked
up again. Lists holding a name twice are never kept (positions would be ambiguous).

Call everything with the lock that guards the fleet.
"""

from __future__ import annotations

from collections.abc import Callable

from extender.placement.fleet import Fleet

MAX_LISTS = 16
MAX_STATES = 64


class NameList:
    """One kept list: the names, their positions, and per view key (clock, view data, answers)."""

    __slots__ = ("names", "pos", "states", "encoded", "prefixes")

    def __init__(self, names: list[str], pos: dict[str, int]) -> None:
        self.names = names
        self.pos = pos
        self.states: dict[str, tuple[int, object, list]] = {}
        self.encoded: list[bytes] | None = None  # filter: each name as JSON
        self.prefixes: list[bytes] | None = None  # prioritize: each '{"Host":<name>,"Score":'

    def answers(self, key: str, fleet: Fleet, ref: object, value_of: Callable[[str], object],
                known: Callable[[str], object] | None = None) -> list:
        """``value_of(name)`` for every position, kept under ``key``: recomputed only for nodes changed
        since the last call, while ``ref`` (the view's store, which a full rebuild replaces) is the same
        object; ``known`` (a plain lookup that raises KeyError where ``value_of`` would compute) makes a
        full pass C-level. The list returned is shared: read it, never change it."""
        clock = fleet.clock
        state = self.states.get(key)
        if state is not None and state[1] is ref:
            changed = fleet.changed_since(state[0])
            if changed is not None:
                values = state[2]
                pos = self.pos
                for name in changed:
                    i = pos.get(name)
                    if i is not None:
                        values[i] = value_of(name)
                self.states[key] = (clock, ref, values)
                return values
        if len(self.states) >= MAX_STATES:
            self.states.clear()
        try:
            values = list(map(known or value_of, self.names))
        except KeyError:
            values = list(map(value_of, self.names))
        self.states[key] = (clock, ref, values)
        return values


class NameLists:
    """The last few lists seen: ``find`` answers a kept list equal to the one given (from its second
    sighting on), else None."""

    def __init__(self, size: int = MAX_LISTS) -> None:
        self.size = size
        self._kept: list[NameList | list[str]] = []  # most recent first; a bare list: seen once

    def find(self, names: list[str]) -> NameList | None:
        kept = self._kept
        n = len(names)
        for i, entry in enumerate(kept):
            listed = entry.names if isinstance(entry, NameList) else entry
            if len(listed) == n and listed == names:
                if not isinstance(entry, NameList):
                    pos = dict(zip(entry, range(n)))
                    if len(pos) != n:
                        return None  # a name twice: answer by name instead
                    entry = NameList(entry, pos)
                if i:
                    del kept[i]
                    kept.insert(0, entry)
                else:
                    kept[0] = entry
                return entry
        kept.insert(0, names)
        del kept[self.size:]
        return None
