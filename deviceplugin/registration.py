"""Keeping every resource registered: at start, when resources change, and after a kubelet restart.

The kubelet deletes every socket in its plugin directory when it (re)starts and serves a new
``kubelet.sock``. An inotify watch on the folder (:class:`tessera.dirwatch.FolderChanges`) wakes the
registrar the moment that socket is made or removed, and its inode is polled every ``poll_s`` as well
(the watch can be unavailable); on a new inode, or a server socket gone, the server is restarted and
registered again at once.

Registering never holds up that watch. A RegisterRequest is sent without waiting (the kubelet
answers only after dialling the plugin's socket back) and its answer is read when it comes. A
kubelet that restarts while it holds a Register, deleting the socket it was about to dial, is seen
at the next poll: the stale call is cancelled, the socket served again and the request sent to the
new kubelet, instead of waiting out the call's deadline with nobody watching (that wait made
re-registration take 6-7 s after back-to-back kubelet restarts; the contract is 2 s). A
registration that fails is sent again after a short jittered backoff (:mod:`tessera.backoff`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from deviceplugin import metrics
from deviceplugin.server import ResourceServer, ServeError
from tessera.backoff import Backoff
from tessera.dirwatch import FolderChanges
from tessera.kubeletapi import KUBELET_SOCKET_NAME
from tessera.log import get_logger

log = get_logger("deviceplugin")

RETRY_BASE_S, RETRY_CAP_S = 0.1, 1.0  # a refused Register is sent again within 0.05-1 s
STEP_RETRY_CAP_S = 10.0  # a step that fails (a socket that cannot be served) is tried again within 5-10 s


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


@dataclass
class _Attempt:
    """One RegisterRequest in flight, to the kubelet whose socket had identity ``kubelet``."""

    future: grpc.Future
    channel: grpc.Channel
    kubelet: tuple[int, int]
    started: float

    def close(self) -> None:
        self.future.cancel()
        self.channel.close()


class Registrar:
    """Owns the resource servers and keeps each one served and registered."""

    def __init__(self, plugin_dir: str, make_server: Callable[[str], ResourceServer],
                 resources: Callable[[], list[str]], poll_s: float = 0.1, register_timeout_s: float = 5.0) -> None:
        self.plugin_dir = plugin_dir
        self.kubelet_socket = os.path.join(plugin_dir, KUBELET_SOCKET_NAME)
        self.make_server = make_server
        self.resources = resources
        self.poll_s = poll_s
        self.register_timeout_s = register_timeout_s
        self.servers: dict[str, ResourceServer] = {}
        self.registered: set[str] = set()
        self._kubelet: tuple[int, int] | None = None
        self._attempts: dict[str, _Attempt] = {}  # the registrar thread's own, like _retry
        self._retry: dict[str, Backoff] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()  # a Register answered, or the folder changed: look now, not at the next poll
        self._folder = FolderChanges(plugin_dir, self._wake.set, name="dp-plugin-dir")
        self._thread = threading.Thread(target=self._run, name="dp-registrar", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._folder.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._folder.stop()
        self._thread.join(timeout=5)
        for resource in list(self._attempts):
            self._give_up(resource)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            self.servers.clear()
            self.registered.clear()

    def ready(self) -> tuple[bool, str]:
        """Whether every resource is served and registered (``/healthz``)."""
        wanted = set(self.resources())
        with self._lock:
            missing = sorted(wanted - self.registered)
        if not wanted:
            return False, "no resources to advertise"
        return (not missing, "ok" if not missing else "not registered: " + ", ".join(missing))

    def _run(self) -> None:
        failures = Backoff(base_s=min(self.poll_s, STEP_RETRY_CAP_S), cap_s=STEP_RETRY_CAP_S)
        last_reason = None
        while not self._stop.is_set():
            wait_s = self.poll_s
            try:
                self._step()
                failures.reset()
                last_reason = None
            except ServeError as err:   # a known condition: one line, logged again only when it changes
                wait_s = failures.failed()
                if str(err) != last_reason:
                    log.error("resource_socket_unavailable", reason=str(err), retry_within_s=failures.ceiling())
                last_reason = str(err)
            except Exception:  # noqa: BLE001 - keep watching
                wait_s = failures.failed()
                log.exception("registration_loop_failed", retry_within_s=failures.ceiling())
            self._wake.wait(wait_s)
            self._wake.clear()

    def _step(self) -> None:
        wanted = set(self.resources())
        kubelet = _inode(self.kubelet_socket)
        restarted = kubelet is not None and kubelet != self._kubelet
        if restarted and self._kubelet is not None:
            log.info("kubelet_restart_seen", socket=self.kubelet_socket,
                     registrations_given_up=sorted(self._attempts))
        self._collect(kubelet)
        todo = []
        with self._lock:
            for resource in [r for r in self.servers if r not in wanted]:
                self._give_up(resource)
                self.servers.pop(resource).stop()
                self.registered.discard(resource)
                log.info("resource_withdrawn", resource=resource)
            for resource in sorted(wanted):
                server = self.servers.get(resource)
                if server is None:
                    server = self.servers[resource] = self.make_server(resource)
                    server.start()
                    todo.append(resource)
                elif restarted or not server.serving():
                    self._give_up(resource)
                    server.stop()
                    server.start()
                    self.registered.discard(resource)
                    self._backoff(resource).reset()  # a new kubelet (or socket): no reason to wait
                    todo.append(resource)
                elif resource not in self.registered:
                    todo.append(resource)
        self._kubelet = kubelet
        if kubelet is None:  # between a kubelet's end and its next start: nobody to register with
            for resource in list(self._attempts):
                self._give_up(resource)
            return
        for resource in todo:
            if resource not in self._attempts and self._backoff(resource).due():
                self._send(resource, kubelet)

    def _backoff(self, resource: str) -> Backoff:
        return self._retry.setdefault(resource, Backoff(base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S))

    def _send(self, resource: str, kubelet: tuple[int, int]) -> None:
        future, channel = self.servers[resource].register(self.kubelet_socket, self.register_timeout_s)
        self._attempts[resource] = _Attempt(future, channel, kubelet, time.monotonic())
        future.add_done_callback(lambda _: self._wake.set())

    def _give_up(self, resource: str) -> None:
        attempt = self._attempts.pop(resource, None)
        if attempt is not None:
            attempt.close()

    def _collect(self, kubelet: tuple[int, int] | None) -> None:
        """Read the answers that came: registered, or failed and tried again after a backoff."""
        for resource, attempt in list(self._attempts.items()):
            if not attempt.future.done():
                continue
            self._give_up(resource)
            if attempt.kubelet != kubelet or resource not in self.servers:
                continue  # answered by a kubelet that has restarted since: the step sends it again
            try:
                attempt.future.result()
            except (grpc.RpcError, grpc.FutureCancelledError) as err:
                detail = err.details() if isinstance(err, grpc.RpcError) else "cancelled"
                metrics.REGISTRATIONS.labels(resource, "failed").inc()
                delay = self._backoff(resource).failed()
                log.warning("registration_failed", resource=resource, reason=detail, retry_in_s=round(delay, 3))
                continue
            with self._lock:
                self.registered.add(resource)
            self._backoff(resource).reset()
            metrics.REGISTRATIONS.labels(resource, "ok").inc()
            log.info("registered", resource=resource, ms=round((time.monotonic() - attempt.started) * 1000, 1))
