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
    """node -> pod -> (amounts, deadline): the node prioritize scored best for a pod not yet bound."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self.nodes: dict[str, dict[str, tuple[frozenset, float]]] = {}
        self._node_of: dict[str, list[str]] = {}   # pod -> its expected nodes

    def expect(self, pod: str, nodes: Sequence[str], amounts: frozenset, now: float) -> None:
        """``nodes`` scored best for ``pod`` (asking ``amounts``) just now; an earlier guess for it is replaced."""
        self.settle(pod)
        self._expire(now)
        if not nodes or not amounts:
            return
        for node in nodes:
            self.nodes.setdefault(node, {})[pod] = (amounts, now + self.ttl_s)
        self._node_of[pod] = list(nodes)

    def settle(self, pod: str) -> None:
        """``pod``'s bind has arrived (or it is gone): the cache's own holds say the rest."""
        for node in self._node_of.pop(pod, ()):
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
            for other, (theirs, deadline) in self.nodes.get(node, {}).items():
                same = amounts & theirs
                if other != pod and same and deadline > now:
                    res, n = min(same)
                    out[node] = (f"node chosen moments ago for {other}, asking the same {res}: {n}; "
                                 "kept for it until its bind arrives")
                    break
        return out

    def _expire(self, now: float) -> None:
        stale = [pod for pod, nodes in self._node_of.items()
                 if all(self.nodes.get(n, {}).get(pod, (None, now))[1] <= now for n in nodes)]
        for pod in stale:
            self.settle(pod)

