"""``tessera_gpu_model_pressure``: the extender shows, per GPU model, the scarcity pressure the
fragmentation policy charges (``extender.placement.scarcity``), from its live cache and the shapes it
learned from the pods it saw."""

from __future__ import annotations

import pytest
from extender_builders import hold, make_node, pod

from extender.cache import ClusterCache
from extender.metrics import ExtenderMetrics
from extender.placement.fragmentation import ShapeBook
from extender.placement.policies import PolicyContext
from tessera.podrequest import pod_request

ANY = {"nvidia.com/mps-core": "100"}


def naming(model: str) -> dict:
    return {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": [model]}]}]}


def pressure_of(metrics: ExtenderMetrics, model: str) -> float | None:
    return metrics.registry.get_sample_value("tessera_gpu_model_pressure", {"model": model})


def test_a_model_that_pods_name_grows_scarcer_as_its_gpus_fill_and_the_large_pool_stays_low():
    # Twelve whole-GPU pods seen: ten run anywhere, one names T4, one names G2 (a twelfth of the cores
    # asked each). T4: 8 GPUs, G2: 48 GPUs, all idle.
    cache = ClusterCache()
    t4 = make_node("t4", gpus=8, model="T4")
    g2 = [make_node(f"g2-{i}", gpus=8, model="G2") for i in range(6)]
    for node in [t4, *g2]:
        cache.fleet.add(node)
    book = ShapeBook()
    for i in range(10):
        book.observe(pod_request(pod(ANY, name=f"any-{i}")))
    book.observe(pod_request(pod(ANY, name="t4-pod", affinity=naming("T4"))))
    book.observe(pod_request(pod(ANY, name="g2-pod", affinity=naming("G2"))))
    metrics = ExtenderMetrics(cache, PolicyContext(shapes=book))
    # pressure(m) = named share x idle cores of all models / idle cores of m
    assert pressure_of(metrics, "T4") == pytest.approx(5600 / 12 / 800)
    assert pressure_of(metrics, "G2") == pytest.approx(5600 / 12 / 4800)
    seen = [pressure_of(metrics, "T4")]
    for gpu in range(6):  # other pods take the T4 GPUs one by one
        with cache.lock:
            hold(t4, gpu, 100)
        seen.append(pressure_of(metrics, "T4"))
        idle = 5600 - 100 * (gpu + 1)
        assert seen[-1] == pytest.approx(min(1.0, idle / 12 / (800 - 100 * (gpu + 1))))
        assert pressure_of(metrics, "G2") == pytest.approx(idle / 12 / 4800)
        assert pressure_of(metrics, "G2") < 0.1
    assert seen == sorted(seen) and seen[0] < 1.0 == seen[-1]
    family = {f.name: f for f in metrics.registry.collect()}["tessera_gpu_model_pressure"]
    assert "1.0" in family.documentation and "no pod names" in family.documentation


def test_every_model_shows_zero_where_no_pod_names_one():
    cache = ClusterCache()
    cache.fleet.add(make_node("t4", gpus=2, model="T4"))
    cache.fleet.add(make_node("g2", gpus=4, model="G2"))
    book = ShapeBook()
    book.observe(pod_request(pod(ANY)))
    metrics = ExtenderMetrics(cache, PolicyContext(shapes=book))
    assert pressure_of(metrics, "T4") == 0.0 == pressure_of(metrics, "G2")
