"""The handlers an ``HttpService`` runs: ``http.server`` handlers, one request each, read from and
answered into memory (the service owns the socket)."""

from __future__ import annotations

import io
from http.server import BaseHTTPRequestHandler
from typing import Any


class Exchange:
    """One request's bytes in and its answer's bytes out: what a handler reads and writes."""

    def __init__(self, request: bytes) -> None:
        self.rfile = io.BytesIO(request)
        self.wfile = io.BytesIO()


class RequestHandler(BaseHTTPRequestHandler):
    """Base of every handler an ``HttpService`` runs, written as usual against ``self.rfile`` and
    ``self.wfile``; ``self.server`` is the service (its ``app`` is what it was given)."""

    protocol_version = "HTTP/1.1"

    @classmethod
    def runs_inline(cls, method: str, path: str) -> bool:
        """Whether this request's handling never waits on anything (no API call, no disk), so the
        event loop answers it itself instead of handing it to a worker. The default: a worker."""
        return False

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = self.request.rfile
        self.wfile = self.request.wfile

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        self.wfile.flush()

    def handle_expect_100(self) -> bool:
        return True  # the service answered "100 Continue" before the body came

    def log_message(self, *args: Any) -> None:  # a log line per request is not worth it
        pass


def answer_of(handler: type[RequestHandler], request: bytes, peer: Any, server: Any) -> tuple[bytes, bool]:
    """Run ``handler`` on one request: the answer's bytes, and whether the connection stays open."""
    exchange = Exchange(request)
    done = handler(exchange, peer, server)
    return exchange.wfile.getvalue(), not done.close_connection
