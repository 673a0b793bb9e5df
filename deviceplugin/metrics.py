"""The plugin's own metrics (``/metrics``) and ``/healthz``, served on ``listen`` by ``tessera.httpserve``."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from tessera.config.nodeconfig import NodeConfigMetrics
from tessera.httpserve import HttpService, ServeLimits
from tessera.httpserve.metricsport import serve_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
ALLOCATIONS = Counter("tessera_deviceplugin_allocations", "Allocate answers per resource and result",
                      ["resource", "result"], registry=REGISTRY)
ALLOCATE_SECONDS = Histogram("tessera_deviceplugin_allocate_seconds", "Allocate latency per container",
                             ["resource"], registry=REGISTRY,
                             buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
PREFERRED_SECONDS = Histogram("tessera_deviceplugin_preferred_allocation_seconds",
                              "GetPreferredAllocation latency per container", ["resource", "source"],
                              registry=REGISTRY, buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5))
HEALTH_TRANSITIONS = Counter("tessera_deviceplugin_health_transitions", "GPU health changes",
                             ["gpu", "healthy"], registry=REGISTRY)
REGISTRATIONS = Counter("tessera_deviceplugin_registrations", "Registrations with the kubelet",
                        ["resource", "result"], registry=REGISTRY)
NODE_CONFIG = NodeConfigMetrics(REGISTRY, "tessera_deviceplugin")


def serve(listen: str, ready: Callable[[], tuple[bool, str]], limits: ServeLimits | None = None) -> HttpService:
    """Serve ``/metrics`` and ``/healthz`` (200 only when ``ready()`` says so) on ``host:port``, on a
    thread of its own; ``shutdown()`` stops it."""
    return serve_metrics(listen, REGISTRY, ready, "deviceplugin-metrics", limits)
