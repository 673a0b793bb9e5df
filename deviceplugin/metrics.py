"""The plugin's own metrics (``/metrics``) and ``/healthz``, served on ``listen`` by ``tessera.httpserve``."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tessera.httpserve import HttpService, RequestHandler, ServeLimits

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


class _Handler(RequestHandler):
    """``/metrics`` and ``/healthz`` (``self.server.app`` is the readiness check)."""

    @classmethod
    def runs_inline(cls, method: str, path: str) -> bool:
        return True  # answered from memory

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, code, ctype = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
        elif path == "/healthz":
            ok, why = self.server.app()
            body, code, ctype = (why + "\n").encode(), 200 if ok else 503, "text/plain"
        else:
            body, code, ctype = b"not found\n", 404, "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(listen: str, ready: Callable[[], tuple[bool, str]], limits: ServeLimits | None = None) -> HttpService:
    """Serve ``/metrics`` and ``/healthz`` (200 only when ``ready()`` says so) on ``host:port``, on a
    thread of its own; ``shutdown()`` stops it."""
    return HttpService(listen, _Handler, app=ready, name="deviceplugin-metrics", limits=limits).start()
