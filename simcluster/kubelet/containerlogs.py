"""Containers' logs on a simulated node, and the kubelet's HTTP endpoint that serves them.

Each run of a container writes ``<node>/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``, as the
real kubelet lays out /var/log/pods. ``GET /containerLogs/<namespace>/<pod>/<container>`` serves the log
of the run the container's status names (``previous=true``: the one before it; ``tailLines``,
``limitBytes``, ``follow``), with the real kubelet's refusals for a container with no log to show, and
the API server's ``pods/log`` reaches it through the Node's ``daemonEndpoints.kubeletEndpoint``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

FOLLOW_POLL_S = 0.2


class LogRefused(Exception):
    """There is no log to serve; the message is the kubelet's own (``... is waiting to start: ...``)."""


def log_path(root: Path, namespace: str, pod: str, uid: str, container: str, restart: int) -> Path:
    """Where one run of a container writes its log."""
    return root / "pods" / f"{namespace}_{pod}_{uid}" / container / f"{restart}.log"


def chosen_run(pod: str, container: str, status: dict | None, previous: bool) -> str:
    """The container ID whose log to serve, from the container's status; LogRefused as the kubelet says it
    (validateContainerLogStatus in pkg/kubelet/kubelet_pods.go)."""
    if status is None:
        raise LogRefused(f'container "{container}" in pod "{pod}" is not available')
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise LogRefused(f'previous terminated container "{container}" in pod "{pod}" not found')
        return last["containerID"]
    if "running" in state:
        return status["containerID"]
    if "terminated" in state:
        chosen = state["terminated"].get("containerID") or (last or {}).get("containerID")
        if not chosen:
            raise LogRefused(f'container "{container}" in pod "{pod}" is terminated')
        return chosen
    if last:
        if not last.get("containerID"):
            raise LogRefused(f'container "{container}" in pod "{pod}" is terminated')
        return last["containerID"]
    reason = (state.get("waiting") or {}).get("reason")
    if reason:
        raise LogRefused(f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
    raise LogRefused(f'container "{container}" in pod "{pod}" is waiting to start - no logs yet')


# (namespace, pod, container, previous) -> (the log file, whether that run is still running)
LogSource = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]]]


class ContainerLogServer:
    """The kubelet's ``/containerLogs`` endpoint on 127.0.0.1 (port 0: any free one)."""

    def __init__(self, source: LogSource, port: int = 0) -> None:
        self._source = source
        self._stopping = threading.Event()
        handler = type("ContainerLogHandler", (_Handler,), {"server_owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet-logs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        segments = [unquote(p) for p in parts.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if len(segments) != 4 or segments[0] != "containerLogs":
            return _reply(handler, 404, b"404 page not found\n")
        _, namespace, pod, container = segments
        try:
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
        except ValueError:
            return _reply(handler, 400, b"tailLines and limitBytes must be integers\n")
        try:
            path, running = self._source(namespace, pod, container, query.get("previous") == "true")
        except LogRefused as exc:
            return _reply(handler, 400, str(exc).encode())
        data = path.read_bytes() if path.exists() else b""
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
        if limit is not None:
            data = data[:max(limit, 0)]
        if query.get("follow") != "true":
            return _reply(handler, 200, data)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        sent = path.stat().st_size if path.exists() else 0
        _chunk(handler, data)
        while running() and not self._stopping.is_set():
            time.sleep(FOLLOW_POLL_S)
            size = path.stat().st_size if path.exists() else 0
            if size > sent:
                with path.open("rb") as fh:
                    fh.seek(sent)
                    _chunk(handler, fh.read(size - sent))
                sent = size
        handler.wfile.write(b"0\r\n\r\n")


class _Handler(BaseHTTPRequestHandler):
    server_owner: ContainerLogServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        """Requests are not logged."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        try:
            self.server_owner.serve(self)
        except OSError:  # the client went away
            self.close_connection = True


def _reply(handler: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    if data:
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()
