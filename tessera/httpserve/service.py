"""``HttpService``: one listening port, its event loop, and the workers its handlers may need."""

from __future__ import annotations

import collections
import errno
import queue
import selectors
import socket
import ssl
import threading
import time
from typing import Any

from tessera.httpserve.framing import Frame, HeadTooLarge, find_frame
from tessera.httpserve.handler import RequestHandler, answer_of
from tessera.httpserve.limits import ServeLimits, parse_listen
from tessera.httpserve.tlsfiles import TlsFiles
from tessera.log import get_logger

log = get_logger("http")

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_FAILED = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_SWEEP_S = 0.1  # how often deadlines are checked
_WARN_EVERY_S = 10.0  # at most one "connections refused" warning per port in this time
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Conn:
    """One client connection and where it stands: handshake, read, handling, write."""

    __slots__ = ("sock", "peer", "client", "state", "buf", "searched", "frame", "deadline", "idle", "out", "keep",
                 "events", "since")

    def __init__(self, sock: socket.socket, peer: Any, state: str, deadline: float) -> None:
        self.sock, self.peer, self.state, self.deadline = sock, peer, state, deadline
        self.client = peer[0] if isinstance(peer, tuple) else str(peer)  # the address, without the port
        self.since = time.monotonic()  # since it last started waiting for a request (accept or keep-alive)
        self.buf = bytearray()
        self.searched = 0  # how much of buf was searched for the end of a head
        self.frame: Frame | None = None  # the current request's, once its head is in
        self.idle = False  # waiting for a keep-alive request's first byte
        self.out = memoryview(b"")
        self.keep = False
        self.events = 0


class HttpService:
    """One listening port: the event loop (``start`` runs it on its own thread, ``serve_forever`` on
    the caller's), ``handler`` for each request, ``app`` for the handlers (``self.server.app``).
    ``counts`` says what happened to connections: accepted, refused, timed_out, handshake_failed,
    answered."""

    def __init__(self, listen: str, handler: type[RequestHandler], *, app: Any = None, name: str = "",
                 limits: ServeLimits | None = None, tls: ssl.SSLContext | TlsFiles | None = None) -> None:
        self.handler, self.app, self.tls = handler, app, tls
        self.limits = limits or ServeLimits()
        self.name = name or listen
        self.counts: collections.Counter = collections.Counter()
        host, port = parse_listen(listen)
        self._listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                              backlog=1024)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, _READ, "accept")
        self._selector.register(self._wake_r, _READ, "wake")
        self._conns: set[_Conn] = set()
        self._per_client: collections.Counter = collections.Counter()  # client address -> open connections
        self._ready: collections.deque[_Conn] = collections.deque()  # requests already buffered
        self._answers: collections.deque = collections.deque()  # (conn, unsent answer, keep) from workers
        self._buffered = 0
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # (conn, request) for workers; None stops one
        self._workers = 0
        self._idle_workers = 0
        self._workers_lock = threading.Lock()
        self._stopping = False
        self._started = False
        self._loop_ident = 0
        self._done = threading.Event()
        self._release_lock = threading.Lock()
        self._refused_since_warning = 0
        self._warned_at = 0.0

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def buffered_bytes(self) -> int:
        """Request bytes held now for all connections together (bounded by ``max_buffered_bytes``)."""
        return self._buffered

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
                for key, _ in self._selector.select(0 if self._ready else _SWEEP_S):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._take_answers()
                    else:
                        self._step(key.data)
                for _ in range(len(self._ready)):
                    conn = self._ready.popleft()
                    if conn.state == "read" and conn in self._conns:
                        self._step(conn)
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
        with self._workers_lock:
            for _ in range(self._workers):
                self._requests.put(None)
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

    # -- connections -------------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the loop is awake anyway) or closed
            pass

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events != events:
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
        if conn in self._conns:
            self._conns.discard(conn)
            self._per_client[conn.client] -= 1
            if not self._per_client[conn.client]:
                del self._per_client[conn.client]
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
            sock.setblocking(False)
            client = peer[0] if isinstance(peer, tuple) else str(peer)
            why = ""
            if self._per_client[client] >= self.limits.max_connections_per_client:
                why = "max_connections_per_client"
            elif len(self._conns) >= self.limits.max_connections and not self._evict_waiting():
                why = "max_connections"
            if why:
                if self.tls is None:
                    try:
                        sock.send(_BUSY)
                    except OSError:
                        pass
                sock.close()
                self._refused(now, why=why, client=client)
                continue
            self.counts["accepted"] += 1
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                try:
                    context = self.tls.current() if isinstance(self.tls, TlsFiles) else self.tls
                    sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
            conn = _Conn(sock, peer, "handshake" if self.tls is not None else "read", now + self.limits.request_timeout_s)
            self._conns.add(conn)
            self._per_client[client] += 1
            self._watch(conn, _READ)

    def _evict_waiting(self) -> bool:
        """Make room for a new connection at the limit: close the one that has waited longest without
        sending a byte of a request (still in its handshake, or idle between keep-alive requests), so
        clients that hold connections open cannot keep out one that comes to ask something. False
        when every connection is busy with a request."""
        waiting = [c for c in self._conns if c.state == "handshake" or (c.state == "read" and not c.buf)]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        log.debug("http_connection_evicted", port=self.name, peer=str(oldest.peer), state=oldest.state)
        self._close(oldest, "evicted")
        return True

    def _refused(self, now: float, why: str, client: str = "") -> None:
        self.counts["refused"] += 1
        self._refused_since_warning += 1
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning("http_connections_refused", port=self.name, refused=self._refused_since_warning,
                        open=len(self._conns), limit=self.limits.max_connections,
                        per_client_limit=self.limits.max_connections_per_client, reason=why, client=client)
            self._refused_since_warning, self._warned_at = 0, now

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns if c.state != "handling" and now > c.deadline]:
            log.debug("http_connection_timed_out", port=self.name, peer=str(conn.peer), state=conn.state)
            self._close(conn, "timed_out")

    def _step(self, conn: _Conn) -> None:
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
            return self._watch(conn, _READ)
        except ssl.SSLWantWriteError:
            return self._watch(conn, _WRITE)
        except (ssl.SSLError, OSError) as exc:
            log.debug("http_handshake_failed", port=self.name, peer=str(conn.peer), reason=str(exc)[:200])
            return self._close(conn, "handshake_failed")
        conn.state = "read"
        self._watch(conn, _READ)
        self._read(conn)

    # -- requests ----------------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        """Read what the client has sent; hand a complete request on."""
        while True:
            if conn.frame is None and len(conn.buf) > conn.searched:
                try:
                    conn.frame = find_frame(conn.buf, conn.searched, self.limits.max_header_bytes,
                                            self.limits.max_body_bytes)
                except HeadTooLarge:
                    return self._answer_now(conn, _TOO_LARGE, "head_too_large")
                conn.searched = len(conn.buf)
                if conn.frame is not None and conn.frame.expect_continue and len(conn.buf) < conn.frame.size:
                    try:
                        conn.sock.send(_CONTINUE)
                    except OSError:
                        pass
            if conn.frame is not None and len(conn.buf) >= conn.frame.size:
                return self._dispatch(conn)
            try:
                data = conn.sock.recv(65536)
            except _WOULD_BLOCK:
                return
            except OSError:
                return self._close(conn)
            if not data:
                return self._close(conn)
            if conn.idle:  # a keep-alive request began: it has request_timeout_s from now
                conn.idle, conn.deadline = False, time.monotonic() + self.limits.request_timeout_s
            if self._buffered + len(data) > self.limits.max_buffered_bytes and self._shed_largest(conn, len(data)):
                return  # this connection held the most: it was answered 503 and closed
            conn.buf += data
            self._buffered += len(data)

    def _shed_largest(self, reading: _Conn, incoming: int) -> bool:
        """Over the buffered-bytes budget: answer 503 to the connections holding the most buffered
        request bytes (counting what ``reading`` just received) until the rest fits, so the clients
        that hog the budget lose their requests, not whoever reads next. True when ``reading`` was shed."""
        shed_reading = False
        while self._buffered + (0 if shed_reading else incoming) > self.limits.max_buffered_bytes:
            held = [(len(c.buf) + (incoming if c is reading else 0), c) for c in self._conns
                    if c.state == "read" and (c.buf or c is reading)]
            if not held:
                break
            _, hog = max(held, key=lambda pair: pair[0])
            log.warning("http_request_shed", port=self.name, peer=str(hog.peer), buffered=len(hog.buf),
                        budget=self.limits.max_buffered_bytes)
            self._buffered -= len(hog.buf)  # its request is dropped now, whenever the 503 leaves
            hog.buf, hog.frame, hog.searched = bytearray(), None, 0
            self._answer_now(hog, _BUSY, "over_budget")
            shed_reading = shed_reading or hog is reading
        return shed_reading

    def _dispatch(self, conn: _Conn) -> None:
        frame = conn.frame
        request = bytes(conn.buf[:frame.size])
        del conn.buf[:frame.size]
        self._buffered -= frame.size
        conn.frame, conn.searched = None, 0
        if self.handler.runs_inline(frame.method, frame.path):  # answered here, the connection left watched
            rest, keep = self._answer(conn, request)
            return self._after_answer(conn, rest, keep and not frame.close_after)
        conn.state = "handling"  # the worker's alone until it hands the answer back
        self._unwatch(conn)
        conn.keep = not frame.close_after  # read back by the loop with the worker's answer
        self._requests.put((conn, request))
        with self._workers_lock:  # one worker more while none waits, up to the limit
            if not self._idle_workers and self._workers < self.limits.workers:
                self._workers += 1
                threading.Thread(target=self._work, name=f"http-{self.name}-{self._workers}", daemon=True).start()

    def _work(self) -> None:
        """A worker: answer requests until told to stop."""
        while True:
            with self._workers_lock:
                self._idle_workers += 1
            item = self._requests.get()
            with self._workers_lock:
                self._idle_workers -= 1
            if item is None:
                return
            conn, request = item
            rest, keep = self._answer(conn, request)
            self._answers.append((conn, rest, keep))
            self._wake()

    def _answer(self, conn: _Conn, request: bytes) -> tuple[memoryview, bool]:
        """Run the handler on one request and send what of its answer goes out at once (nothing
        else touches a connection being answered): what is left to send, and whether to keep it."""
        try:
            answer, keep = answer_of(self.handler, request, conn.peer, self)
        except Exception:  # noqa: BLE001 - a handler's bug answers 500, the port goes on
            log.exception("http_handler_failed", port=self.name)
            answer, keep = _FAILED, False
        rest = memoryview(answer)
        try:
            while rest:
                rest = rest[conn.sock.send(rest):]
        except _WOULD_BLOCK:
            pass
        except OSError:
            keep = False  # gone: closed once the rest is found unsendable
        return rest, keep

    def _take_answers(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._answers:
            conn, rest, keep = self._answers.popleft()
            if conn in self._conns:
                self._after_answer(conn, rest, keep and conn.keep)

    def _after_answer(self, conn: _Conn, rest: memoryview, keep: bool) -> None:
        self.counts["answered"] += 1
        self._send(conn, rest, keep)

    def _answer_now(self, conn: _Conn, answer: bytes, counted: str) -> None:
        self.counts[counted] += 1
        self._unwatch(conn)
        self._send(conn, memoryview(answer), keep=False)

    def _send(self, conn: _Conn, rest: memoryview, keep: bool) -> None:
        conn.out, conn.keep, conn.state = rest, keep, "write"
        conn.deadline = time.monotonic() + self.limits.request_timeout_s
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            try:
                conn.out = conn.out[conn.sock.send(conn.out):]
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return self._watch(conn, _WRITE)
            except ssl.SSLWantReadError:
                return self._watch(conn, _READ)
            except OSError:
                return self._close(conn)
        if not conn.keep:
            return self._close(conn)
        conn.state, conn.idle, conn.since = "read", not conn.buf, time.monotonic()
        conn.deadline = time.monotonic() + (self.limits.idle_timeout_s if conn.idle else self.limits.request_timeout_s)
        self._watch(conn, _READ)
        if conn.buf or (self.tls is not None and conn.sock.pending()):
            self._ready.append(conn)  # a request already here: read it on the loop's next turn
