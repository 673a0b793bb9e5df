"""Keeping every resource registered: at start, when resources change, and after a kubelet restart.

The kubelet deletes every socket in its plugin directory when it (re)starts and serves a new
``kubelet.sock``. Its inode is polled every ``poll_s`` (inotify is not in the standard library);
on a new inode, or a server socket gone, every server is restarted and registered again at once,
in parallel, well within a second.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from deviceplugin import metrics
from deviceplugin.server import ResourceServer
from tessera.kubeletapi import KUBELET_SOCKET_NAME
from tessera.log import get_logger

log = get_logger("deviceplugin")


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


class Registrar:
    """Owns the resource servers and keeps each one served and registered."""

    def __init__(self, plugin_dir: str, make_server: Callable[[str], ResourceServer],
                 resources: Callable[[], list[str]], poll_s: float = 0.1) -> None:
        self.plugin_dir = plugin_dir
        self.kubelet_socket = os.path.join(plugin_dir, KUBELET_SOCKET_NAME)
        self.make_server = make_server
        self.resources = resources
        self.poll_s = poll_s
        self.servers: dict[str, ResourceServer] = {}
        self.registered: set[str] = set()
        self._kubelet: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dp-register")
        self._thread = threading.Thread(target=self._run, name="dp-registrar", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            self.servers.clear()
            self.registered.clear()
        self._pool.shutdown(wait=False)

    def ready(self) -> tuple[bool, str]:
        """Whether every resource is served and registered (``/healthz``)."""
        wanted = set(self.resources())
        with self._lock:
            missing = sorted(wanted - self.registered)
        if not wanted:
            return False, "no resources to advertise"
        return (not missing, "ok" if not missing else "not registered: " + ", ".join(missing))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("registration_loop_failed")
            self._stop.wait(self.poll_s)

    def _step(self) -> None:
        wanted = set(self.resources())
        kubelet = _inode(self.kubelet_socket)
        restarted = kubelet is not None and kubelet != self._kubelet
        if restarted and self._kubelet is not None:
            log.info("kubelet_restart_seen", socket=self.kubelet_socket)
        with self._lock:
            for resource in [r for r in self.servers if r not in wanted]:
                self.servers.pop(resource).stop()
                self.registered.discard(resource)
                log.info("resource_withdrawn", resource=resource)
            todo = []
            for resource in sorted(wanted):
                server = self.servers.get(resource)
                if server is None:
                    server = self.servers[resource] = self.make_server(resource)
                    server.start()
                    todo.append(server)
                elif restarted or not server.serving():
                    server.stop()
                    server.start()
                    self.registered.discard(resource)
                    todo.append(server)
                elif resource not in self.registered:
                    todo.append(server)
        if kubelet is None:
            self._kubelet = None
            return
        self._kubelet = kubelet
        if todo:
            self._register_all(todo)

    def _register_all(self, servers: list[ResourceServer]) -> None:
        start = time.monotonic()
        futures = {s.resource: self._pool.submit(s.register, self.kubelet_socket) for s in servers}
        for resource, future in futures.items():
            try:
                future.result(timeout=10)
            except (grpc.RpcError, TimeoutError, OSError) as err:
                detail = err.details() if isinstance(err, grpc.RpcError) else str(err)
                metrics.REGISTRATIONS.labels(resource, "failed").inc()
                log.warning("registration_failed", resource=resource, reason=detail)
                continue
            with self._lock:
                self.registered.add(resource)
            metrics.REGISTRATIONS.labels(resource, "ok").inc()
            log.info("registered", resource=resource, ms=round((time.monotonic() - start) * 1000, 1))
