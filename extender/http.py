"""What the daemon's HTTP ports answer: the extender verbs (``POST /filter``, ``/prioritize``, ``/bind``,
``/preempt``, ``/prioritize-dra``), ``GET /healthz`` (200 only on the ready leader, so the Service routes to it) and
``GET /metrics``; the admission webhook (``POST /mutate``) on its own TLS port. The ports themselves
(connections, TLS, timeouts, limits) are ``tessera.httpserve``'s.

Bodies are read up to ``max_body_bytes``; a larger one, a body that is not JSON, or one of the wrong
shape gets an answer that says so (the ``Error`` field for filter and bind, HTTP 400 otherwise) and
the server goes on serving. Each verb's answer carries ``Server-Timing: handler;dur=<ms>``, the time
from its body's first byte read to its answer encoded, so a client can tell the extender's time from
the round trip's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tessera.httpserve import HttpService, RequestHandler
from tessera.log import get_logger

from extender import wire
from extender.verbs import BadRequest

log = get_logger("extender")

Route = Callable[[bytes], Any]


class HttpApp:
    """Routes and limits of one port (the verbs, the webhook, or only /healthz and /metrics)."""

    def __init__(self, routes: dict[str, Route], max_body_bytes: int, metrics=None,
                 ready: Callable[[], tuple[bool, str]] = lambda: (True, "ok"),
                 error_field: tuple[str, ...] = ("/filter", "/bind")) -> None:
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.ready = ready
        self.error_field = error_field


class ExtenderHandler(RequestHandler):
    """One request to one of the extender's ports; ``self.server.app`` is that port's ``HttpApp``."""

    server: HttpService

    @classmethod
    def runs_inline(cls, method: str, path: str) -> bool:
        """kube-scheduler's filter, prioritize and preempt, and the probes, are answered from memory on
        the event loop. ``/bind`` calls the API server, and ``/mutate`` reads whatever any client of the
        webhook port sends (an AdmissionReview of megabytes takes a second to decode): both go to workers,
        so neither stalls the loop that every other caller waits on."""
        return path not in ("/bind", "/mutate")

    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              handled_s: float | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if handled_s is not None:  # W3C Server-Timing: a client can tell our time from the round trip
            self.send_header("Server-Timing", f"handler;dur={handled_s * 1000:.3f}")
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, path: str, message: str) -> None:
        if path == "/filter":
            self._send(200, wire.encode(wire.filter_result(error=message)))
        elif path == "/bind":
            self._send(200, wire.encode(wire.binding_result(message)))
        else:
            self._send(400, json.dumps({"error": message}).encode())

    def do_GET(self) -> None:  # noqa: N802
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok, why = app.ready()
            self._send(200 if ok else 503, why.encode(), "text/plain")
        elif path == "/metrics" and app.metrics is not None:
            self._send(200, generate_latest(app.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        app = self.server.app
        t0 = time.perf_counter()
        path = self.path.split("?", 1)[0]
        route = app.routes.get(path)
        length_text = self.headers.get("Content-Length")
        if route is None:
            self.close_connection = True
            self._send(404, json.dumps({"error": f"no such path {path}"}).encode())
            return
        try:
            length = int(length_text) if length_text is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._refuse(path, "request needs a Content-Length")
            return
        if length > app.max_body_bytes:
            self.close_connection = True  # the body is not read: this connection cannot be reused
            self._refuse(path, f"request body of {length} bytes is over the limit of {app.max_body_bytes}")
            log.warning("request_too_large", path=path, bytes=length, limit=app.max_body_bytes)
            return
        body = self.rfile.read(length)
        try:
            answer = route(body)
        except BadRequest as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode())
            return
        except Exception as exc:  # noqa: BLE001 - one bad request never stops the daemon
            log.exception("request_failed", path=path)
            self._refuse(path, f"internal error: {type(exc).__name__}: {exc}")
            return
        answer = answer if isinstance(answer, bytes) else wire.encode(answer)
        self._send(200, answer, handled_s=time.perf_counter() - t0)
        if app.metrics is not None:
            app.metrics.latency.labels(path.strip("/")).observe(time.perf_counter() - t0)
