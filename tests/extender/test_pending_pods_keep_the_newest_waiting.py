"""``PendingPods``, what bind reads a pod's request from: the pods still waiting, the newest kept when
more wait than its limit (a watch that missed deletions costs bounded memory)."""

from __future__ import annotations

from extender.pendingpods import PendingPods


def waiting(name: str, node: str = "") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": {"nodeName": node}}


def test_bound_and_deleted_pods_leave_and_the_oldest_goes_past_the_limit():
    pending = PendingPods(limit=2)
    for name in ("a", "b"):
        pending.pod_event("ADDED", waiting(name))
    pending.pod_event("MODIFIED", waiting("a"))      # seen again: now the newest
    pending.pod_event("ADDED", waiting("c"))         # "b" is the oldest: it goes
    assert [name for name in "abc" if pending.get(f"uid-{name}", "ns", name)] == ["a", "c"]
    pending.pod_event("MODIFIED", waiting("a", node="n1"))
    pending.pod_event("DELETED", waiting("c"))
    assert (pending.get("uid-a", "ns", "a"), pending.get("uid-c", "ns", "c")) == (None, None)
    pending.pod_event("ADDED", waiting("d"))
    assert pending.get("uid-d", "other", "d") is None and pending.get("uid-d", "ns", "d") is not None
