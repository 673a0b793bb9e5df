"""The kubelet's plugin registration, and the gRPC server of both sockets.

The kubelet's plugin watcher notices a socket appearing in its ``plugins_registry`` folder, asks it
``GetInfo`` (type ``DRAPlugin``, the driver's name, the absolute path of the DRA socket and the
services it offers), checks the answer and reports with ``NotifyRegistrationStatus``. It finds sockets
already there when it starts, so a kubelet restart needs nothing from the driver; a driver restart
serves the same paths again (a stale file there is replaced).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from tessera.kubeletapi import DRA_PLUGIN_TYPE, DRA_SERVICE_V1, dra_grpc, drahealth_grpc, registration_grpc, registration_pb2
from tessera.log import get_logger

log = get_logger("draplugin")


class ServeError(OSError):
    """A socket cannot be served; the message says which and why."""


class RegistrationService(registration_grpc.RegistrationServicer):
    """What the kubelet's plugin watcher asks."""

    def __init__(self, driver: str, endpoint: str, services: tuple[str, ...] = (DRA_SERVICE_V1,)) -> None:
        self.driver, self.endpoint, self.services = driver, endpoint, list(services)
        self.registered = threading.Event()
        self.last_error = ""

    def GetInfo(self, request, context):  # noqa: N802
        return registration_pb2.PluginInfo(type=DRA_PLUGIN_TYPE, name=self.driver, endpoint=self.endpoint,
                                           supported_versions=self.services)

    def NotifyRegistrationStatus(self, request, context):  # noqa: N802
        if request.plugin_registered:
            self.last_error = ""
            self.registered.set()
            log.info("dra_plugin_registered", driver=self.driver, endpoint=self.endpoint)
        else:
            self.last_error = request.error
            self.registered.clear()
            log.error("dra_plugin_registration_refused", driver=self.driver, reason=request.error)
        return registration_pb2.RegistrationStatusResponse()


def registration_socket(registry_dir: str, driver: str) -> str:
    """``<registry>/<driver>-reg.sock``, as the kubelet's own plugins name theirs."""
    return os.path.join(registry_dir, f"{driver}-reg.sock")


def _listen(server: grpc.Server, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        bound = server.add_insecure_port(f"unix://{path}")
    except RuntimeError:   # grpcio >= 1.60 raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise ServeError(f"cannot listen on {path}")


class PluginServer:
    """One gRPC server on the DRA socket and the registration socket; the registration socket is
    served last, so the kubelet never dials a DRA socket that is not there yet."""

    def __init__(self, dra: dra_grpc.DRAPluginServicer, registration: RegistrationService, dra_socket: str,
                 registration_socket_path: str, health=None) -> None:
        self.dra, self.registration, self.health = dra, registration, health   # health: a DRAResourceHealth servicer
        self.dra_socket, self.registration_socket = dra_socket, registration_socket_path
        self._server: grpc.Server | None = None

    def start(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="dra"))
        dra_grpc.add_DRAPluginServicer_to_server(self.dra, server)
        if self.health is not None:
            drahealth_grpc.add_DRAResourceHealthServicer_to_server(self.health, server)
        registration_grpc.add_RegistrationServicer_to_server(self.registration, server)
        try:
            _listen(server, self.dra_socket)
            _listen(server, self.registration_socket)
        except ServeError:
            server.stop(grace=None)
            raise
        server.start()
        self._server = server
        log.info("dra_plugin_serving", dra_socket=self.dra_socket, registration_socket=self.registration_socket)

    def stop(self) -> None:
        """Stop serving and remove the registration socket (the kubelet then deregisters the driver)."""
        if self._server is not None:
            self._server.stop(grace=2).wait(5)
            self._server = None
        for path in (self.registration_socket, self.dra_socket):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
