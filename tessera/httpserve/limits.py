"""What a port lets its clients take, where it listens, and its TLS."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServeLimits:
    """What one port lets its clients take. The defaults suit every Tessera port."""

    max_connections: int = 512
    max_connections_per_client: int = 64  # per client address: one tenant cannot take every slot
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    workers: int = 8  # threads for handlers that may wait (an API call), started as needed
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_buffered_bytes: int = 64 * 1024 * 1024  # request bytes held for all connections together

    @classmethod
    def from_config(cls, section: Any, **more: Any) -> "ServeLimits":
        """The limits a daemon's config section sets (its ``http_*`` keys), plus ``more``."""
        return cls(max_connections=section.http_max_connections,
                   max_connections_per_client=section.http_max_connections_per_client,
                   request_timeout_s=section.http_request_timeout_s,
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
    present a certificate that CA signed (the handshake fails otherwise). OSError naming the file
    that cannot be loaded."""
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
