"""The extender's Prometheus metrics, in their own registry: decisions by verb, outcome and reason,
latency per verb, and (computed when scraped) fragmentation per node, the cluster's free GPU capacity and
each GPU model's scarcity pressure (``extender.placement.scarcity``, what the fragmentation policy charges)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from extender.placement.scarcity import model_pressures

PRESSURE_HELP = ("Scarcity pressure per GPU model (nvidia.com/gpu.product), as the fragmentation policy "
                 "charges it now: the GPU cores that pods naming models will still ask for, at the workload's "
                 "mix, that only this model can serve, against its usable idle cores. 1.0 (the cap): they will "
                 "ask for all of it, every core another pod takes there is one they miss; 0: no pod names "
                 "the model (every model with GPUs in the cluster is listed)")
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ExtenderMetrics:
    """Counters and histograms the verbs update, and a collector over the cache."""

    def __init__(self, cache=None, ctx=None) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter("tessera_extender_decisions", "Extender decisions by verb, outcome and reason",
                                 ["verb", "outcome", "reason"], registry=self.registry)
        self.latency = Histogram("tessera_extender_request_seconds", "Time to answer one extender call, by verb",
                                 ["verb"], buckets=BUCKETS, registry=self.registry)
        if cache is not None:
            self.registry.register(_FleetCollector(cache, ctx))


class _FleetCollector:
    def __init__(self, cache, ctx) -> None:
        self.cache, self.ctx = cache, ctx

    def collect(self):
        frag = GaugeMetricFamily("tessera_node_fragmentation_cores",
                                 "GPU capacity (cores, 100 per GPU) that typical pods could not use, per node",
                                 labels=["node"])
        free = GaugeMetricFamily("tessera_cluster_free_gpu_cores",
                                 "Free GPU capacity of open GPUs in cores (100 per GPU), by mode", labels=["mode"])
        pressure = GaugeMetricFamily("tessera_gpu_model_pressure", PRESSURE_HELP, labels=["model"])
        model = self.ctx.fragmentation_model() if self.ctx is not None else None
        totals: dict[str, float] = {"mps": 0, "exclusive": 0, "timeslice": 0, "mig": 0}
        with self.cache.lock:
            for node in self.cache.fleet:
                if model is not None and node.gpus:
                    frag.add_metric([node.name], float(model.node_fragment_cores(node)))
                for g in node.gpus:
                    if g.open:
                        totals[g.mode] = totals.get(g.mode, 0) + 100 * (1 - g.used_fraction)
            if model is not None:
                for product, value in sorted(model_pressures(model, self.cache.fleet).items()):
                    pressure.add_metric([product], value)
        for mode, value in totals.items():
            free.add_metric([mode], value)
        by_key = GaugeMetricFamily("tessera_assignments_by_signing_key",
                                   "Pods holding an extender-signed assignment, by the id of the key that signed "
                                   "it (a rotated-out key is dropped once its count is 0)", labels=["key_id"])
        for kid, count in sorted(self.cache.assignments_by_key().items()):
            by_key.add_metric([kid], count)
        yield frag
        yield free
        yield pressure
        yield by_key
