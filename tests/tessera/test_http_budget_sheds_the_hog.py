"""The request bytes a port buffers for all its connections together are bounded. Over the bound, the
clients holding the most lose their requests, not whoever happens to read next: a few connections
that announce large bodies and send nearly all of them cannot turn every other caller away."""

from __future__ import annotations

import http.client
import socket

from simcluster import poll_until
from tessera.httpserve import HttpService, ServeLimits
from tessera.httpserve.handler import RequestHandler

GUARD_S = 60  # hang guard only
KIB = 1024


class Echo(RequestHandler):
    """Answers a POST with the size of its body."""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def _hog(port: int, announced: int, sent: int) -> socket.socket:
    """A connection that announces ``announced`` body bytes and sends ``sent`` of them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)
    sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % announced + b"h" * sent)
    return sock


def _shed(sock: socket.socket) -> bool:
    """Whether the server has answered this connection 503. It does so before it reads on, so by the
    time the caller's answer came, a shed hog's 503 is already here: no waiting needed."""
    sock.setblocking(False)  # a socket with a timeout would wait out the timeout, MSG_DONTWAIT or not
    try:
        return sock.recv(64).startswith(b"HTTP/1.1 503")
    except BlockingIOError:
        return False


def test_the_connections_holding_the_budget_are_shed_and_a_small_request_is_answered():
    limits = ServeLimits(max_body_bytes=512 * KIB, max_buffered_bytes=1024 * KIB, request_timeout_s=GUARD_S)
    service = HttpService("127.0.0.1:0", Echo, limits=limits, name="budget").start()
    try:
        port = service.address[1]
        hogs = [_hog(port, 500 * KIB, 490 * KIB) for _ in range(2)]  # 980 KiB of the 1024 held
        poll_until(lambda: service.buffered_bytes >= 2 * 490 * KIB, timeout_s=GUARD_S,  # hang guard only
                   interval_s=0.01, what="the loop to buffer both hogs' bytes")
        caller = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD_S)
        caller.request("POST", "/x", b"c" * (100 * KIB))  # does not fit beside both hogs
        resp = caller.getresponse()
        assert resp.status == 200 and resp.read() == str(100 * KIB).encode()
        assert any(_shed(hog) for hog in hogs), "no hog lost its request"
        assert service.counts["over_budget"] >= 1
    finally:
        service.shutdown()
