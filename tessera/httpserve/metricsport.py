"""A daemon's plain ``/metrics`` and ``/healthz`` port: a Prometheus registry and a readiness check,
answered from memory on the port's event loop."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tessera.httpserve.handler import RequestHandler
from tessera.httpserve.limits import ServeLimits
from tessera.httpserve.service import HttpService


class _Handler(RequestHandler):
    """``/metrics`` and ``/healthz`` (``self.server.app`` is ``(registry, ready)``)."""

    @classmethod
    def runs_inline(cls, method: str, path: str) -> bool:
        return True  # answered from memory

    def do_GET(self) -> None:  # noqa: N802
        registry, ready = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, code, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
        elif path == "/healthz":
            ok, why = ready()
            body, code, ctype = (why + "\n").encode(), 200 if ok else 503, "text/plain"
        else:
            body, code, ctype = b"not found\n", 404, "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_metrics(listen: str, registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]], name: str,
                  limits: ServeLimits | None = None) -> HttpService:
    """Serve ``/metrics`` (``registry``) and ``/healthz`` (200 only when ``ready()`` says so) on
    ``host:port``, on a thread of its own; ``shutdown()`` stops it."""
    return HttpService(listen, _Handler, app=(registry, ready), name=name, limits=limits).start()
