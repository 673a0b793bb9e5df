"""After a bind makes the learned shape model due for a rebuild, the warmer builds it and scores the
fleet for the recent shapes, so the next prioritize scores no node on kube-scheduler's clock and
answers what a cold computation answers."""

from __future__ import annotations

import random
import time

import pytest
from extender_builders import hold, make_node

from extender.cache import ClusterCache
from extender.placement import PolicyContext, ShapeBook, node_scores, policies
from tessera.podrequest import KIND_MPS, GpuAsk, simple_request
from extender.warmer import ModelWarmer


def _cache(rng: random.Random) -> ClusterCache:
    cache = ClusterCache("", None)
    for i in range(30):
        node = make_node(f"n{i:02d}", gpus=4, gib=16)
        for gpu in range(rng.randrange(4)):
            hold(node, gpu, rng.choice([25, 50, 75]))
        cache.fleet.add(node)
    return cache


@pytest.fixture
def counted(monkeypatch):
    calls = []
    raw = policies.SCORERS["fragmentation"]

    def counting(*args):
        calls.append(1)
        return raw(*args)
    monkeypatch.setitem(policies.SCORERS, "fragmentation", counting)
    return calls


@pytest.mark.parametrize("warm", [False, True])
def test_after_a_rebuild_prioritize_scores_no_node_once_warmed(counted, warm):
    rng = random.Random(5)
    cache = _cache(rng)
    book = ShapeBook(window=10, refresh=2)
    ctx = PolicyContext(shapes=book)
    warmer = ModelWarmer(cache, ctx)
    half, quarter = simple_request(GpuAsk(KIND_MPS, core=50)), simple_request(GpuAsk(KIND_MPS, core=25))
    for r in (half, quarter):
        warmer.seen(r)
        node_scores(r, cache.fleet, ctx)
    for r in (half, quarter, quarter):  # binds: the model is due again
        book.observe(r)
    if warm:
        assert warmer.warm() is True
        assert warmer.warm() is False        # the same model: nothing to do
    counted.clear()
    names, ids, distinct, _ = node_scores(half, cache.fleet, ctx)
    assert (len(counted) == 0) == warm
    # The same answer a cold context with the same learned shapes gives.
    cold = PolicyContext(shapes=ShapeBook(window=10, refresh=2))
    for r in (half, quarter, quarter):
        cold.shapes.observe(r)
    cold_names, cold_ids, cold_distinct, _ = node_scores(half, cache.fleet, cold)
    assert names == cold_names
    assert [distinct[i] for i in ids] == [cold_distinct[i] for i in cold_ids]


def test_the_thread_warms_after_a_poke_and_stops():
    cache = _cache(random.Random(6))
    book = ShapeBook(window=10, refresh=1)
    warmer = ModelWarmer(cache, PolicyContext(shapes=book)).start()
    try:
        warmer.seen(simple_request(GpuAsk(KIND_MPS, core=50)))
        book.observe(simple_request(GpuAsk(KIND_MPS, core=50)))
        warmer.poke()
        for _ in range(100):
            if warmer.warmed:
                break
            time.sleep(0.02)
        assert warmer.warmed == 1
    finally:
        warmer.stop()
    assert not warmer._thread.is_alive()
