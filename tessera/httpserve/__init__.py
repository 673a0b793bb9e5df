"""How Tessera serves HTTP on every port it opens: the extender's verbs and admission webhook, the
device plugin's and the exporter's ``/metrics`` and ``/healthz``.

One event-loop thread per port owns every connection while it is not being answered: it accepts, runs
the TLS handshake, reads each request's head and body and writes each answer back, all without
blocking and each against a deadline. Only a complete request reaches a handler: on the loop itself
when the handler says it never waits on anything (``RequestHandler.runs_inline``), else on one of a
few worker threads. So a client that connects and sends nothing, stops in the middle of a TLS
ClientHello, trickles its headers or its body, or does not read its answer costs a socket and a few
bytes, never a thread, and is closed at its deadline (``ServeLimits``):

- ``request_timeout_s``: the TLS handshake and the first request's head and body, from the connect;
  a later request's head and body from its first byte; an answer's writing.
- ``idle_timeout_s``: a keep-alive connection waiting for its next request.
- ``max_connections``: connections open at once; one more is closed at accept (with a 503 where
  the port is plain HTTP), and the listener goes on accepting.
"""

from tessera.httpserve.handler import RequestHandler
from tessera.httpserve.limits import ServeLimits, parse_listen, server_tls_context
from tessera.httpserve.service import HttpService
from tessera.httpserve.tlsfiles import TlsFiles

__all__ = ["HttpService", "RequestHandler", "ServeLimits", "TlsFiles", "parse_listen", "server_tls_context"]
