"""A server TLS context that follows its files: a renewed certificate is served without a restart.

cert-manager (or ``make-keys.sh`` and a ``kubectl apply``) renews the webhook's certificate by writing
the Secret again; the kubelet swaps the mounted files atomically (the ``..data`` symlink). ``current()``
looks at the files' identity (device, inode, size, modification time, through symlinks) at most every
``check_every_s`` and builds a new context when one changed; new connections get it, open ones keep
theirs. A renewal read half-written (a key that does not match its certificate yet) keeps the last good
context and is said once (``tls_reload_failed``); the next change is tried again.
"""

from __future__ import annotations

import os
import ssl
import threading
import time

from tessera.httpserve.limits import server_tls_context
from tessera.log import get_logger

log = get_logger("http")
CHECK_EVERY_S = 5.0


def _identity(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("missing", exc.errno)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class TlsFiles:
    """``server_tls_context(cert_path, key_path, client_ca_path)``, rebuilt when a file changes.
    Raises OSError at construction when the files cannot be loaded (a daemon must not start without)."""

    def __init__(self, cert_path: str, key_path: str, client_ca_path: str = "",
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self.paths = tuple(p for p in (cert_path, key_path, client_ca_path) if p)
        self._args = (cert_path, key_path, client_ca_path)
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._seen = self._identities()
        self._context = server_tls_context(*self._args)
        self._next_check = time.monotonic() + check_every_s
        self._failed: tuple | None = None
        self.reloads = 0   # contexts built after the first (for tests and logs)

    def _identities(self) -> tuple:
        return tuple(_identity(p) for p in self.paths)

    def current(self) -> ssl.SSLContext:
        """The context for a new connection: the files' latest good state, looked at every ``check_every_s``."""
        now = time.monotonic()
        if now < self._next_check:
            return self._context
        with self._lock:
            self._next_check = now + self.check_every_s
            seen = self._identities()
            if seen != self._seen and seen != self._failed:
                try:
                    context = server_tls_context(*self._args)
                except OSError as exc:
                    self._failed = seen
                    log.warning("tls_reload_failed", files=list(self.paths), reason=str(exc),
                                keeps="the certificate loaded before")
                else:
                    self._context, self._seen, self._failed = context, seen, None
                    self.reloads += 1
                    log.info("tls_reloaded", files=list(self.paths), reloads=self.reloads)
            return self._context
