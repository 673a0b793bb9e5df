"""The HTTP face: ``/metrics`` (the last collection, pre-rendered) and ``/healthz``.

Rendering happens once per collection, on the poller's thread; a scrape only copies bytes, so its
latency does not depend on the number of GPUs or containers and never waits on NVML.
"""

from __future__ import annotations

import gzip
import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST

from exporter.collector import render
from exporter.snapshot import Snapshot
from tessera.httpserve import HttpService, RequestHandler, ServeLimits
from tessera.log import get_logger

__all__ = ["MetricsPage", "MetricsServer"]

log = get_logger("exporter")


class MetricsPage:
    """The rendered exposition of the last snapshot, and how fresh it is."""

    def __init__(self, max_age_s: float, dcgm_compatible_labels: bool = True, dcgm_series: bool = True) -> None:
        self.max_age_s = max_age_s
        self.dcgm_compatible_labels = dcgm_compatible_labels
        self.dcgm_series = dcgm_series
        self._lock = threading.Lock()
        self._body = b""
        self._gzipped = b""
        self._published_at = 0.0

    def publish(self, snapshot: Snapshot) -> None:
        body = render(snapshot, dcgm_compatible_labels=self.dcgm_compatible_labels, dcgm_series=self.dcgm_series)
        zipped = gzip.compress(body, compresslevel=1)
        with self._lock:
            self._body, self._gzipped, self._published_at = body, zipped, time.monotonic()

    def body(self, gzipped: bool) -> bytes:
        with self._lock:
            return self._gzipped if gzipped else self._body

    def healthy(self) -> tuple[bool, str]:
        """Fresh when the last collection is younger than ``max_age_s``."""
        with self._lock:
            at = self._published_at
        if not at:
            return False, "no collection yet"
        age = time.monotonic() - at
        if age > self.max_age_s:
            return False, f"last collection {age:.0f}s ago"
        return True, "ok"


class _Handler(RequestHandler):
    """``/metrics`` and ``/healthz`` of the page (``self.server.app``)."""

    @classmethod
    def runs_inline(cls, method: str, path: str) -> bool:
        return True  # answered from memory

    def do_GET(self) -> None:  # noqa: N802
        page: MetricsPage = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gz = "gzip" in (self.headers.get("Accept-Encoding") or "")
            self._send(200, page.body(gz), CONTENT_TYPE_LATEST, {"Content-Encoding": "gzip"} if gz else {})
        elif path == "/healthz":
            ok, why = page.healthy()
            self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class MetricsServer:
    """The HTTP port of one :class:`MetricsPage` (``tessera.httpserve``)."""

    def __init__(self, page: MetricsPage, listen: str, limits: ServeLimits | None = None) -> None:
        self._http = HttpService(listen, _Handler, app=page, name="exporter-metrics", limits=limits)

    @property
    def address(self) -> tuple[str, int]:
        return self._http.address

    def serve_forever(self) -> None:
        self._http.serve_forever()

    def shutdown(self) -> None:
        self._http.shutdown()
