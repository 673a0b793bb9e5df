"""How Tessera serves HTTP on every port it opens: the extender's verbs and admission webhook, the
device plugin's and the exporter's ``/metrics`` and ``/healthz``.

One event-loop thread owns every connection while it is not being answered: it accepts, runs the
TLS handshake, reads each request's head and body and writes each answer back, all without blocking
and each against a deadline. Only a complete request reaches a worker thread, which runs the handler
on the request's bytes and hands back the answer's bytes. So a client that connects and sends
nothing, stops in the middle of a TLS ClientHello, trickles its headers or its body, or does not read
its answer costs a socket and a few bytes, never a thread, and is closed at its deadline:

- ``request_timeout_s``: the TLS handshake and the first request's head and body, from the connect;
  a later request's head and body from its first byte; an answer's writing.
- ``idle_timeout_s``: a keep-alive connection waiting for its next request.
- ``max_connections``: connections open at once; one more is closed at accept (with a 503 where
  the port is plain HTTP), and the listener goes on accepting.

Handlers are ``http.server.BaseHTTPRequestHandler`` subclasses (of :class:`RequestHandler`), written
as usual against ``self.rfile`` and ``self.wfile``, which are in memory here.
"""

from __future__ import annotations

import collections
import errno
import io
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tessera.log import get_logger

__all__ = ["HttpService", "RequestHandler", "ServeLimits", "parse_listen", "server_tls_context"]

log = get_logger("http")

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SWEEP_S = 0.1  # how often deadlines are checked
_WARN_EVERY_S = 10.0  # at most one "connections refused" warning per port in this time


@dataclass(frozen=True)
class ServeLimits:
    """What one port lets its clients take. The defaults suit every Tessera port."""

    max_connections: int = 512
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    workers: int = 8
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_buffered_bytes: int = 64 * 1024 * 1024  # request bytes held for all connections together

    @classmethod
    def from_config(cls, section: Any, **more: Any) -> "ServeLimits":
        """The limits a daemon's config section sets (its ``http_*`` keys), plus ``more``."""
        return cls(max_connections=section.http_max_connections, request_timeout_s=section.http_request_timeout_s,
                   idle_timeout_s=section.http_idle_timeout_s, workers=section.http_workers, **more)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9400`` for IPv6; empty host: every address) -> (host, port); ValueError
    naming the bad part."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def server_tls_context(cert_path: str, key_path: str, client_ca_path: str = "") -> ssl.SSLContext:
    """A TLS 1.2+ server context with this certificate; with ``client_ca_path``, a client must
    present a certificate that CA signed (the handshake fails otherwise)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"cannot load the TLS certificate {cert_path} with key {key_path}: {exc.strerror or exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca_path:
        try:
            ctx.load_verify_locations(cafile=client_ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"cannot load the client CA {client_ca_path}: {exc.strerror or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Exchange:
    """One request's bytes in and its answer's bytes out: what a handler reads and writes."""

    def __init__(self, request: bytes) -> None:
        self.rfile = io.BytesIO(request)
        self.wfile = io.BytesIO()


class RequestHandler(BaseHTTPRequestHandler):
    """Base of every handler an :class:`HttpService` runs: one request, read from memory, answered
    into memory. ``self.server`` is the service (its ``app`` is what it was given)."""

    protocol_version = "HTTP/1.1"

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

    def log_message(self, *args: Any) -> None:  # one line per request is not worth it
        pass


class _Conn:
    """One client connection and where it stands."""

    __slots__ = ("sock", "peer", "state", "buf", "deadline", "idle", "head_end", "need", "close_after", "out",
                 "keep", "events")

    def __init__(self, sock: socket.socket, peer: Any, state: str, deadline: float) -> None:
        self.sock, self.peer, self.state, self.deadline = sock, peer, state, deadline
        self.buf = bytearray()
        self.idle = False  # waiting for a keep-alive request's first byte
        self.head_end = -1  # where the current request's head ends in buf, once known
        self.need = 0  # body bytes the current request carries
        self.close_after = False  # the body cannot be framed or is not read: close after the answer
        self.out = memoryview(b"")
        self.keep = False
        self.events = 0


class HttpService:
    """One listening port: the event loop (``start`` runs it on its own thread, ``serve_forever`` on
    the caller's), its workers, and ``handler`` for each request."""

    def __init__(self, listen: str, handler: type[RequestHandler], *, app: Any = None, name: str = "",
                 limits: ServeLimits | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.app, self.tls = handler, app, tls
        self.limits = limits or ServeLimits()
        self.name = name or listen
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=1024)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: set[_Conn] = set()
        self._answers: collections.deque = collections.deque()
        self._buffered = 0
        self._workers = ThreadPoolExecutor(self.limits.workers, thread_name_prefix=f"http-{self.name}")
        self._stopping = False
        self._done = threading.Event()
        self._release_lock = threading.Lock()
        self._started = False
        self._loop_ident = 0
        self._refused_since_warning = 0
        self._warned_at = 0.0
        self.counts = collections.Counter()  # accepted, refused, timed_out, handshake_failed, answered

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def start(self) -> "HttpService":
        self._started = True
        threading.Thread(target=self.serve_forever, name=f"http-{self.name}", daemon=True).start()
        return self

    def serve_forever(self) -> None:
        """Run the event loop on this thread until ``shutdown``."""
        self._started, self._loop_ident = True, threading.get_ident()
        try:
            next_sweep = time.monotonic() + _SWEEP_S
            while not self._stopping:
                for key, mask in self._selector.select(_SWEEP_S):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._take_answers()
                    else:
                        self._step(key.data, mask)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_S
        finally:
            self._release()

    def shutdown(self) -> None:
        """Stop accepting, close every connection, and return once the loop has ended (at once when
        called on the loop's own thread, as from a signal handler there)."""
        self._stopping = True
        self._wake()
        self._workers.shutdown(wait=False, cancel_futures=True)
        if not self._started:
            self._release()
        elif threading.get_ident() != self._loop_ident:
            self._done.wait(timeout=5)

    def _release(self) -> None:
        with self._release_lock:
            if self._done.is_set():
                return
            for conn in list(self._conns):
                self._close(conn)
            for resource in (self._selector, self._listener, self._wake_r, self._wake_w):
                resource.close()
            self._done.set()

    # -- the loop's steps --------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the loop is awake anyway) or closed
            pass

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._selector.register(conn.sock, events, conn)
        conn.events = events

    def _unwatch(self, conn: _Conn) -> None:
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0

    def _close(self, conn: _Conn, counted: str = "") -> None:
        if counted:
            self.counts[counted] += 1
        self._unwatch(conn)
        self._buffered -= len(conn.buf)
        conn.buf = bytearray()
        self._conns.discard(conn)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        now = time.monotonic()
        for _ in range(64):  # then serve the others before accepting more
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: the connection waits in the backlog
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._refused(now, why=exc.strerror or "no file descriptors")
                return
            if len(self._conns) >= self.limits.max_connections:
                if self.tls is None:
                    try:
                        sock.setblocking(False)
                        sock.send(_BUSY)
                    except OSError:
                        pass
                sock.close()
                self._refused(now, why="max_connections")
                continue
            self.counts["accepted"] += 1
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
            conn = _Conn(sock, peer, "handshake" if self.tls is not None else "read",
                         now + self.limits.request_timeout_s)
            self._conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)

    def _refused(self, now: float, why: str) -> None:
        self.counts["refused"] += 1
        self._refused_since_warning += 1
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning("http_connections_refused", port=self.name, refused=self._refused_since_warning,
                        open=len(self._conns), limit=self.limits.max_connections, reason=why)
            self._refused_since_warning, self._warned_at = 0, now

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns if c.state != "handling" and now > c.deadline]:
            log.debug("http_connection_timed_out", port=self.name, peer=str(conn.peer), state=conn.state)
            self._close(conn, "timed_out")

    def _step(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.state == "handshake":
                self._handshake(conn)
            elif conn.state == "read":
                self._read(conn)
            elif conn.state == "write":
                self._write(conn)
        except Exception:  # noqa: BLE001 - one connection's trouble never stops the port
            log.exception("http_connection_failed", port=self.name, peer=str(conn.peer))
            self._close(conn)

    def _handshake(self, conn: _Conn) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self._watch(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self._watch(conn, selectors.EVENT_WRITE)
        except (ssl.SSLError, OSError) as exc:
            log.debug("http_handshake_failed", port=self.name, peer=str(conn.peer), reason=str(exc)[:200])
            return self._close(conn, "handshake_failed")
        conn.state = "read"
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        while conn.head_end < 0 or len(conn.buf) - conn.head_end < conn.need:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                return self._watch(conn, selectors.EVENT_WRITE)
            except OSError:
                return self._close(conn)
            if not data:
                return self._close(conn)
            if conn.idle:  # a keep-alive request began: it has request_timeout_s from now
                conn.idle, conn.deadline = False, time.monotonic() + self.limits.request_timeout_s
            if self._buffered + len(data) > self.limits.max_buffered_bytes:
                return self._answer_now(conn, _BUSY, "over_budget")
            conn.buf += data
            self._buffered += len(data)
            if conn.head_end < 0 and not self._frame(conn):
                return
        if conn.head_end >= 0 and len(conn.buf) - conn.head_end >= conn.need:
            self._dispatch(conn)

    def _frame(self, conn: _Conn) -> bool:
        """Find the request's head in the buffer and how long its body is; False when the connection
        was answered and closed instead."""
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > self.limits.max_header_bytes:
                self._answer_now(conn, b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                                       b"Connection: close\r\n\r\n", "header_too_large")
                return False
            return True
        conn.head_end = end + 4
        lengths, chunked, expect = set(), False, False
        for line in bytes(conn.buf[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        length = next(iter(lengths)) if len(lengths) == 1 else b""
        if chunked or len(lengths) > 1 or (lengths and (not length.isdigit() or len(length) > 15)):
            conn.need, conn.close_after = 0, True  # the handler answers from the head; the body is never read
        elif length and int(length) > self.limits.max_body_bytes:
            conn.need, conn.close_after = 0, True
        else:
            conn.need = int(length) if length else 0
            if expect and conn.need > len(conn.buf) - conn.head_end:
                try:
                    conn.sock.send(_CONTINUE)
                except (OSError, ssl.SSLError):
                    pass
        return True

    def _dispatch(self, conn: _Conn) -> None:
        size = conn.head_end + conn.need
        request = bytes(conn.buf[:size])
        del conn.buf[:size]
        self._buffered -= size
        conn.head_end, conn.need = -1, 0
        conn.state = "handling"
        self._unwatch(conn)
        try:
            self._workers.submit(self._handle, conn, request)
        except RuntimeError:  # shutting down
            self._close(conn)

    def _handle(self, conn: _Conn, request: bytes) -> None:
        """On a worker: run the handler on one request, give the answer to the loop."""
        try:
            exchange = _Exchange(request)
            handler = self.handler(exchange, conn.peer, self)
            answer, keep = exchange.wfile.getvalue(), not handler.close_connection
        except Exception:  # noqa: BLE001 - a handler's bug answers 500, the port goes on
            log.exception("http_handler_failed", port=self.name)
            answer, keep = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False
        self._answers.append((conn, answer, keep))
        self._wake()

    def _take_answers(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._answers:
            conn, answer, keep = self._answers.popleft()
            if conn not in self._conns:
                continue
            self.counts["answered"] += 1
            self._send(conn, answer, keep and not conn.close_after)

    def _answer_now(self, conn: _Conn, answer: bytes, counted: str) -> None:
        self.counts[counted] += 1
        self._unwatch(conn)
        self._send(conn, answer, keep=False)

    def _send(self, conn: _Conn, answer: bytes, keep: bool) -> None:
        conn.out, conn.keep, conn.state = memoryview(answer), keep, "write"
        conn.deadline = time.monotonic() + self.limits.request_timeout_s
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return self._watch(conn, selectors.EVENT_WRITE)
            except ssl.SSLWantReadError:
                return self._watch(conn, selectors.EVENT_READ)
            except OSError:
                return self._close(conn)
            conn.out = conn.out[sent:]
        if not conn.keep:
            return self._close(conn)
        conn.state, conn.close_after = "read", False
        conn.idle = not conn.buf
        conn.deadline = time.monotonic() + (self.limits.idle_timeout_s if conn.idle else self.limits.request_timeout_s)
        self._watch(conn, selectors.EVENT_READ)
        if conn.buf and not self._frame(conn):  # a pipelined request already here
            return
        self._read(conn)
