"""Nodes a filter answered for a pod whose bind has not arrived yet.

kube-scheduler sends a pod's bind from a goroutine of its own and goes straight on to the next pod:
that pod's filter often reaches the extender before the first pod's bind does. Two pods asking the
same amounts of one resource, one after the other, with the same node best for both, then both land
on it, and the per-shape rule (``ClusterCache.blocked``: one such pod per node until the device
plugin has allocated it) refuses the second pod's bind. kube-scheduler retries that pod after its
back-off, 1 to 10 s: a stall that a backlog of pods of one size meets again and again.

When filter answers only a pod's best nodes (``filter_best_nodes``), kube-scheduler binds the pod to
one of them. Filter writes them down as *expected* for that pod until its bind arrives
(``ClusterCache.assume`` settles it) or ``ttl_s`` passes, and keeps a later pod asking the same
amounts off them, as long as that pod still fits elsewhere. Guarded by the cache lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ExpectedBinds:
    """The nodes filter answered for each pod not yet bound, and the amounts that pod asks."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self.nodes: dict[str, dict[str, frozenset]] = {}   # node -> pod -> amounts
        # pod -> (its nodes, deadline); in the order written, so deadlines only grow along it
        self._pods: dict[str, tuple[list[str], float]] = {}

    def expect(self, pod: str, nodes: Sequence[str], amounts: frozenset, now: float) -> None:
        """Filter answered ``nodes`` for ``pod`` (asking ``amounts``) just now; replaces what it had."""
        self.settle(pod)
        self._expire(now)
        if not nodes or not amounts:
            return
        for node in nodes:
            self.nodes.setdefault(node, {})[pod] = amounts
        self._pods[pod] = (list(nodes), now + self.ttl_s)

    def settle(self, pod: str) -> None:
        """``pod``'s bind has arrived (or it is gone): the cache's own holds say the rest."""
        nodes, _ = self._pods.pop(pod, ((), 0.0))
        for node in nodes:
            pods = self.nodes.get(node)
            if pods is not None:
                pods.pop(pod, None)
                if not pods:
                    del self.nodes[node]

    def blocked(self, nodes: Iterable[str], pod: str, amounts: frozenset, now: float) -> dict[str, str]:
        """Of ``nodes`` (few: the expected ones a filter passed), those expected for another pod asking
        one of the same amounts, each with why."""
        out = {}
        for node in nodes:
            for other, theirs in self.nodes.get(node, {}).items():
                same = amounts & theirs
                if other != pod and same and self._pods[other][1] > now:
                    res, n = min(same)
                    out[node] = (f"node chosen moments ago for {other}, asking the same {res}: {n}; "
                                 "kept for it until its bind arrives")
                    break
        return out

    def _expire(self, now: float) -> None:
        for pod, (_, deadline) in list(self._pods.items()):
            if deadline > now:
                break   # every later one was written later
            self.settle(pod)
