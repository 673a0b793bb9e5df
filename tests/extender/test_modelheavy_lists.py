"""Model-heavy pod lists (``simcluster.modelheavy``): the default list resampled with a seed so that
the share of GPU tasks asked for carry a ``gpu_spec``, drawn as the trace's own spec'd tasks carry
them; rebuilt the same from the same seed, addressable by name."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from simcluster.modelheavy import MODELHEAVY_SEED, build, gpu_shape, parse_name, spec_frequencies
from simcluster.trace import NODE_LIST, POD_LISTS, default_trace_dir, load_tasks, read_pod_list

TRACE = default_trace_dir()
pytestmark = pytest.mark.skipif(not (TRACE / NODE_LIST).is_file(), reason="the trace is not checked out beside")


@pytest.fixture(scope="module")
def lists():
    return read_pod_list(TRACE, "default"), read_pod_list(TRACE, "gpuspec10")


def _bound(n: int, p: float) -> float:
    """Four standard deviations of a count of n draws with probability p (a false alarm about once in
    15,000 runs), and one for rounding."""
    return 4 * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("share", [0.3, 0.5, 0.8])
def test_the_share_of_gpu_tasks_with_a_spec_is_the_one_asked(lists, share):
    base, spec = lists
    rows = build(base, spec, share, seed=11)
    gpu = [r for r in rows if gpu_shape(r) is not None]
    with_spec = sum(1 for r in gpu if r["gpu_spec"])
    assert abs(with_spec - share * len(gpu)) <= _bound(len(gpu), share)
    assert len(rows) == len(base)
    assert not any(r["gpu_spec"] for r in rows if gpu_shape(r) is None)  # CPU-only tasks: never


def test_specs_come_from_the_trace_with_its_frequencies_per_gpu_shape(lists):
    base, spec = lists
    trace_freq = spec_frequencies(spec)
    rows = build(base, spec, 0.5, seed=12)
    drawn = spec_frequencies(rows)
    for shape, counts in drawn.items():
        assert set(counts) <= set(trace_freq[shape])  # only values the trace's tasks of that shape carry
        n, total = sum(counts.values()), sum(trace_freq[shape].values())
        for value, weight in trace_freq[shape].items():
            p = weight / total
            assert abs(counts[value] - p * n) <= _bound(n, p), (shape, value)
    # the trace's spec'd shares mostly name P100 or T4, its multi-GPU tasks G2: so do the built ones
    assert drawn["share"].most_common(2)[0][0] in ("P100", "T4")
    assert drawn["multi"].most_common(1)[0][0] == "G2"


def test_the_same_seed_builds_the_same_list_and_another_seed_another(lists):
    base, spec = lists
    assert build(base, spec, 0.3, seed=5) == build(base, spec, 0.3, seed=5)
    assert build(base, spec, 0.3, seed=5) != build(base, spec, 0.3, seed=6)
    names = [r["name"] for r in build(base, spec, 0.3, seed=5)]
    assert len(set(names)) == len(names)


def test_the_lists_are_pod_lists_by_name():
    assert {"modelheavy30", "modelheavy50"} <= set(POD_LISTS)
    assert parse_name("modelheavy30") == (0.3, MODELHEAVY_SEED)
    assert parse_name("modelheavy45s7") == (0.45, 7)
    assert parse_name("gpuspec10") is None and parse_name("modelheavy101") is None
    tasks = load_tasks(TRACE, "modelheavy30")
    gpu = [t for t in tasks if t.request.asks]
    constrained = sum(1 for t in gpu if t.request.models is not None)
    assert abs(constrained - 0.3 * len(gpu)) <= _bound(len(gpu), 0.3)
    assert [t.name for t in load_tasks(TRACE, "modelheavy30")] == [t.name for t in tasks]
    assert Counter(t.request.models is not None for t in load_tasks(TRACE, "modelheavy50") if t.request.asks)[True] \
        > constrained
