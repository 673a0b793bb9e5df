"""The nodes the extender knows, by name, with a log of which changed: the filter and prioritize verbs
keep their results per request shape in a view and recompute only the nodes changed since.

A node added to a fleet reports each change (``assume``, ``release``) to it, and the fleet keeps the
nodes grouped by state, so a view built from scratch computes once per group. Views are dropped when
the log grows long (more changes than a few times the node count since the oldest view) and rebuilt
from scratch on next use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from extender.placement.nodestate import NodeState

MAX_VIEWS = 4096


class Fleet:
    """NodeStates by name, a change clock, and per-verb views of results."""

    def __init__(self, nodes: Iterable[NodeState] = ()) -> None:
        self._nodes: dict[str, NodeState] = {}
        self._log: list[str] = []
        self._base = 0
        self._views: dict[str, dict] = {}
        self._groups: dict[int, dict[str, None]] = {}  # node state id -> names of the nodes in it
        self._state_of: dict[str, int] = {}
        for node in nodes:
            self.add(node)

    @property
    def clock(self) -> int:
        """Changes seen so far."""
        return self._base + len(self._log)

    def add(self, node: NodeState) -> None:
        """Track a node (replacing one of the same name)."""
        old = self._nodes.get(node.name)
        if old is not None:
            old.watcher = None
        node.watcher = self._touched
        self._nodes[node.name] = node
        self._touched(node)

    def remove(self, name: str) -> NodeState | None:
        """Stop tracking a node; returns it (None if unknown)."""
        node = self._nodes.pop(name, None)
        if node is not None:
            node.watcher = None
            self._log.append(name)
            self._ungroup(name)
        return node

    def _ungroup(self, name: str) -> None:
        old = self._state_of.pop(name, None)
        if old is not None:
            group = self._groups[old]
            del group[name]
            if not group:
                del self._groups[old]

    def _touched(self, node: NodeState) -> None:
        name = node.name
        sid = node.state_id()
        if self._state_of.get(name) != sid:
            self._ungroup(name)
            self._groups.setdefault(sid, {})[name] = None
            self._state_of[name] = sid
        self._log.append(name)
        if len(self._log) > 8 * len(self._nodes) + 1024:
            self._base += len(self._log)
            self._log = []
            self._views.clear()

    def changed_since(self, clock: int) -> list[str] | None:
        """Names of nodes changed (added, removed) since ``clock``, each once, in the order they first
        changed (so results do not depend on string hashing); None when that is too old to tell."""
        if clock < self._base:
            return None
        return list(dict.fromkeys(self._log[clock - self._base:]))

    def view(self, key: str) -> dict:
        """The result store of one verb and request shape (``clock`` says how current it is)."""
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= MAX_VIEWS:
                self._views.clear()
            view = self._views[key] = {"clock": -1}
        return view

    def groups(self) -> list[tuple[NodeState, list[str]]]:
        """The nodes grouped by state (``NodeState.state_id``): one node of each group and the names of
        all in it. Answers that depend on the state alone are computed once per group."""
        nodes = self._nodes
        return [(nodes[next(iter(g))], list(g)) for g in self._groups.values()]

    def get(self, name: str) -> NodeState | None:
        return self._nodes.get(name)

    def __getitem__(self, name: str) -> NodeState:
        return self._nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[NodeState]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def names(self) -> list[str]:
        return list(self._nodes)
