"""The DRA driver's own metrics (``/metrics``) and ``/healthz``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tessera.config.nodeconfig import NodeConfigMetrics

REGISTRY = CollectorRegistry(auto_describe=True)
NODE_CONFIG = NodeConfigMetrics(REGISTRY, "tessera_draplugin")
CALLS = Counter("tessera_draplugin_claim_calls", "Claims prepared or unprepared, per call and result",
                ["call", "result"], registry=REGISTRY)
CALL_SECONDS = Histogram("tessera_draplugin_claim_seconds", "Time to prepare or unprepare one claim",
                         ["call"], registry=REGISTRY,
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
PREPARED = Gauge("tessera_draplugin_prepared_claims", "Claims prepared on this node now", registry=REGISTRY)
PUBLISHED = Gauge("tessera_draplugin_published_devices", "Devices in this node's ResourceSlice",
                  registry=REGISTRY)
UNHEALTHY = Gauge("tessera_draplugin_unhealthy_gpus", "GPUs of this driver out for their health (their devices "
                  "tainted in the ResourceSlice)", registry=REGISTRY)


def observe(call: str, result: str, seconds: float) -> None:
    """Count one claim's call and its latency."""
    CALLS.labels(call, result).inc()
    CALL_SECONDS.labels(call).observe(seconds)
