"""Clients that hold an HTTP port without ever finishing a request, as a hostile tenant would: one
that connects and sends nothing, one that stops in the middle of a TLS ClientHello, and ones that
trickle a request's headers a byte at a time. Every port Tessera serves must survive them
(``tessera.httpserve``); the tests and ``bench/webhook_bench.py`` use them to show it.

Every socket operation runs on the clients' own thread (an SSL connection is not safe to use from
two threads), which also notices when the server closes a connection.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time

__all__ = ["SlowClients", "client_hello"]

# A request head that never ends: the header line grows a byte at a time and no blank line comes.
_ENDLESS_HEAD = b"POST /mutate HTTP/1.1\r\nHost: tessera\r\nContent-Type: application/json\r\nX-Padding: "


def client_hello() -> bytes:
    """The first flight of a TLS client: a whole ClientHello record."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class SlowClients:
    """Connections to ``address`` that never finish a request. ``tls`` (a client context) makes the
    tricklers finish the TLS handshake first and trickle inside it. Use as a context manager."""

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None = None, every_s: float = 0.5,
                 source: str = "") -> None:
        """``source``: the local address to connect from (another loopback address, 127.0.0.2, is another
        client to the server); the system's choice when empty."""
        self.address, self.tls, self.every_s, self.source = address, tls, every_s, source
        self._idle: list[socket.socket] = []
        self._tricklers: list[socket.socket] = []
        self._sent: dict[socket.socket, int] = {}
        self._payload: dict[socket.socket, bytes] = {}
        self._closed: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def _connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=30,
                                        source_address=(self.source, 0) if self.source else None)

    def idle(self, n: int = 1) -> "SlowClients":
        """``n`` connections that send nothing."""
        socks = [self._connect() for _ in range(n)]
        with self._lock:
            self._idle += socks
        return self

    def half_hello(self, n: int = 1) -> "SlowClients":
        """``n`` connections that send half a TLS ClientHello and stop."""
        hello = client_hello()
        socks = []
        for _ in range(n):
            sock = self._connect()
            sock.sendall(hello[: len(hello) // 2])
            socks.append(sock)
        with self._lock:
            self._idle += socks
        return self

    def trickling(self, n: int, payload: bytes = _ENDLESS_HEAD, first: bytes = b"") -> "SlowClients":
        """``n`` connections that send ``first`` at once, then ``payload`` (by default a request head
        that never ends; past its end, more bytes) one byte every ``every_s``."""
        socks = []
        for _ in range(n):
            sock = self._connect()
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            if first:
                sock.sendall(first)
            socks.append(sock)
        with self._lock:
            self._tricklers += socks
            self._sent.update((s, 0) for s in socks)
            self._payload.update((s, payload) for s in socks)
        return self

    def start(self) -> "SlowClients":
        self._thread.start()
        return self

    @property
    def connected(self) -> int:
        """How many of these connections the server has not closed (as of the last tick)."""
        with self._lock:
            return len(self._idle) + len(self._tricklers) - len(self._closed)

    def wait_closed(self, guard_s: float, at_most: int = 0) -> bool:
        """Whether the server closes them until at most ``at_most`` are left (all, by default) within
        ``guard_s`` (a hang guard, not a goal)."""
        deadline = time.monotonic() + guard_s
        while self.connected > at_most and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.connected <= at_most

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                socks = [s for s in self._idle + self._tricklers if s not in self._closed]
                tricklers = set(self._tricklers)
            readable = set(select.select(socks, [], [], 0)[0]) if socks else set()
            for sock in socks:
                if sock in readable and self._server_closed(sock):
                    with self._lock:
                        self._closed.add(sock)
                elif sock in tricklers:
                    self._trickle(sock)

    def _server_closed(self, sock: socket.socket) -> bool:
        try:
            sock.setblocking(False)
            data = sock.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:  # reset, or a TLS connection ended without close_notify
            return True
        finally:
            sock.setblocking(True)
        return not data or data.startswith(b"HTTP/1.1 5")  # closed, or refused with a 503 before the close

    def _trickle(self, sock: socket.socket) -> None:
        sent = self._sent[sock]
        byte = self._payload[sock][sent:sent + 1] or b"a"
        try:
            sock.send(byte)
            self._sent[sock] = sent + 1
        except OSError:
            with self._lock:
                self._closed.add(sock)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self._idle + self._tricklers:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "SlowClients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
