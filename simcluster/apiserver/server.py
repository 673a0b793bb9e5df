"""``ApiServer``: the embedded Kubernetes API server on 127.0.0.1, started and stopped in-process."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tessera.log import get_logger

from .authn import TokenAuthenticator
from .handler import ApiHandler
from .persistence import Persister, load_into
from .registry import Registry
from .resources import NAMESPACES
from .store import Store
from .webhooks import Admission, ServiceResolver

log = get_logger("apiserver")

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], api: ApiServer) -> None:
        self.registry = api.registry
        self.store = api.store
        self.authenticator = api.authenticator
        self.bookmark_interval = api.bookmark_interval
        self._api = api
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(addr, ApiHandler)
        host, port = self.server_address[:2]
        self.address_text = f"{host}:{port}"

    def recorder(self) -> Callable[[str, str, dict[str, str], str], None] | None:
        return self._api.recorder

    def is_stopping(self) -> bool:
        return self._api._stopping.is_set()  # noqa: SLF001

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (reset, broken pipe) is normal: a debug line, not a
        traceback on stderr; anything else is logged with its traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            log.debug("client_gone_mid_request", client=str(client_address), reason=str(exc))
        else:
            log.exception("request_failed", client=str(client_address))

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ApiServer:
    """An API server speaking the Kubernetes REST wire format.

    ``port=0`` picks a free port. ``persist_path`` keeps the cluster in a JSON file across restarts.
    ``graceful_pod_deletion=False`` removes pods at the first DELETE, as if a kubelet confirmed at
    once. ``service_resolver(namespace, name, port) -> (host, port)`` says where a webhook's
    ``clientConfig.service`` listens (default 127.0.0.1 at the service port).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        persist_path: str | Path | None = None,
        *,
        graceful_pod_deletion: bool = True,
        service_resolver: ServiceResolver | None = None,
        bookmark_interval: float = 5.0,
        history_size: int = 20_000,
        persist_debounce: float = 0.2,
    ) -> None:
        self.host = host
        self._port = port
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_size=history_size)
        self.authenticator = TokenAuthenticator()
        self.admission = Admission(self.store, service_resolver)
        self.registry = Registry(self.store, self.admission, graceful_pod_deletion)
        self.persist_path = Path(persist_path) if persist_path else None
        self._persist_debounce = persist_debounce
        self._persister: Persister | None = None
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Set to a ``recording.RequestRecorder`` (or any callable taking method, path, query and the
        # Authorization header) to record every request; None (the default) records nothing.
        self.recorder: Callable[[str, str, dict[str, str], str], None] | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ApiServer:
        """Load persisted state (if any), create the initial namespaces, and start serving."""
        if self._http is not None:
            return self
        self._stopping.clear()
        if self.persist_path is not None and self.store.resource_version == 0:
            load_into(self.store, self.persist_path)
        for ns in INITIAL_NAMESPACES:
            if self.store.get(NAMESPACES, "", ns) is None:
                self.registry.create_entry(NAMESPACES, "", {"metadata": {"name": ns}})
        if self.persist_path is not None and self._persister is None:
            self._persister = Persister(self.store, self.persist_path, self._persist_debounce)
            self._persister.start()
        self._http = _HttpServer((self.host, self._port), self)
        self._port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="apiserver", daemon=True)
        self._thread.start()
        log.info("apiserver_started", url=self.url, persist_path=str(self.persist_path or ""))
        return self

    def stop(self) -> None:
        """Stop serving, end every watch and open connection, and write the final state."""
        if self._http is None:
            return
        self._stopping.set()
        self._http.shutdown()
        self.store.close_watchers()
        self._http.server_close()
        self._http.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = None
        if self._persister is not None:
            self._persister.stop()
            self._persister = None
        log.info("apiserver_stopped", url=self.url)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- facts

    @property
    def port(self) -> int:
        """The port served (known after ``start()`` when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self._port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default", token: str = "") -> Path:
        """Write a kubeconfig for this server that kubectl and the Python client accept: the admin's (no
        credentials), or with a bearer ``token`` (``service_account_token``) the user it names."""
        path = Path(path)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "simcluster", "cluster": {"server": self.url}}],
            "users": [{"name": "simcluster-admin", "user": {"token": token} if token else {}}],
            "contexts": [{"name": "simcluster",
                          "context": {"cluster": "simcluster", "user": "simcluster-admin", "namespace": namespace}}],
            "current-context": "simcluster",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token that authenticates as ``system:serviceaccount:<namespace>:<name>``."""
        return self.authenticator.service_account_token(namespace, name)

    def flush(self) -> None:
        """Write the persisted state now (no-op without ``persist_path``)."""
        if self._persister is not None:
            self._persister.flush()


__all__ = ["ApiServer", "INITIAL_NAMESPACES"]
