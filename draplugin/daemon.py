"""The DRA driver daemon: GPUs from NVML, the ResourceSlice publisher, the kubelet plugin's sockets.

Start order: read the GPUs and the checkpoint (a driver that restarts knows what it prepared), serve
the DRA socket and then the registration socket (the kubelet registers the driver), publish the
slice. ``/healthz`` answers 200 once the kubelet registered the driver and the slice is published.
"""

from __future__ import annotations

import os
import threading

from draplugin import metrics
from draplugin.checkpoint import Checkpoint
from draplugin.devices import PublishedGpu, device_entry, select_gpus
from draplugin.prepare import ClaimReader, DraService, PrepareSettings
from draplugin.registration import PluginServer, RegistrationService, registration_socket
from draplugin.slices import SlicePublisher
from tessera.config import DraPluginConfig
from tessera.grant import GrantError
from tessera.httpserve import ServeLimits
from tessera.httpserve.metricsport import serve_metrics
from tessera.log import get_logger
from tessera.nodekey import node_grant_key
from tessera.nvml import Nvml

log = get_logger("draplugin")


class StartError(RuntimeError):
    """The driver cannot start; the message says why."""


class DraPluginDaemon:
    """Everything one node's DRA driver runs; :meth:`start`, then :meth:`stop` on SIGTERM."""

    def __init__(self, config: DraPluginConfig, client) -> None:
        self.config = config
        self.client = client   # kubernetes.client.ApiClient
        self.node = config.node_name or os.environ.get("NODE_NAME", "") or os.uname().nodename
        self.gpus: dict[str, PublishedGpu] = {}
        self.driver_version = ""
        self.server: PluginServer | None = None
        self.publisher: SlicePublisher | None = None
        self.registration: RegistrationService | None = None
        self.http = None
        self.stopped = threading.Event()

    def start(self) -> None:
        cfg = self.config
        with Nvml() as nvml:
            gpus = nvml.read_gpus()
            self.driver_version = nvml.driver_version()
        try:
            selected = select_gpus(gpus, cfg.gpus, cfg.gpu_modes)
            key = node_grant_key(cfg.grant_key_path)
        except (ValueError, GrantError) as err:
            raise StartError(str(err)) from None
        self.gpus = {g.name: g for g in selected}
        checkpoint = Checkpoint(os.path.join(cfg.plugin_path, "checkpoint.json"))
        metrics.PREPARED.set_function(lambda: len(checkpoint.claims))
        metrics.PUBLISHED.set(len(self.gpus))
        settings = PrepareSettings(cfg.driver_name, self.node, cfg.cdi_dir, cfg.device_root, key,
                                   cfg.mps_pipe_directory, cfg.mps_shm_directory)
        service = DraService(settings, lambda: self.gpus, ClaimReader(self.client), checkpoint, metrics.observe)
        dra_socket = os.path.join(cfg.plugin_path, "dra.sock")
        self.registration = RegistrationService(cfg.driver_name, dra_socket)
        self.server = PluginServer(service, self.registration, dra_socket,
                                   registration_socket(cfg.plugins_registry_path, cfg.driver_name))
        self.server.start()
        self.publisher = SlicePublisher(self.client, self.node, cfg.driver_name, self._devices)
        self.publisher.start()
        self.http = serve_metrics(cfg.listen, metrics.REGISTRY, self.ready, "draplugin-metrics",
                                  ServeLimits.from_config(cfg, max_body_bytes=64 * 1024))
        log.info("dra_plugin_started", node=self.node, driver=cfg.driver_name, devices=sorted(self.gpus),
                 prepared_claims=len(checkpoint.claims))

    def _devices(self) -> list[dict]:
        return [device_entry(g, self.driver_version) for g in self.gpus.values()]

    def ready(self) -> tuple[bool, str]:
        """Whether the kubelet registered the driver and its slice is published; why not."""
        if self.registration is None or not self.registration.registered.is_set():
            why = self.registration.last_error if self.registration else ""
            return False, f"not registered with the kubelet{': ' + why if why else ''}"
        if self.publisher is None or not self.publisher.published.is_set():
            return False, "ResourceSlice not published yet"
        return True, f"ok: {len(self.gpus)} devices published"

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        if self.server is not None:
            self.server.stop()
        if self.http is not None:
            self.http.shutdown()
        self.stopped.set()
