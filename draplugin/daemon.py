"""The DRA driver daemon: GPUs from NVML, the ResourceSlice publisher, the kubelet plugin's sockets.

Start order: read the GPUs and the checkpoint (a driver that restarts knows what it prepared), serve
the DRA socket and then the registration socket (the kubelet registers the driver), publish the
slice. ``/healthz`` answers 200 once the kubelet registered the driver and the slice is published.

With ``mig`` GPUs the NVML session stays open (prepare makes MIG devices), and at start every MIG
device on those GPUs that no prepared claim holds is removed: the driver owns their partitioning, and a
device left by a prepare that crashed before its checkpoint would otherwise block its placement.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from draplugin import metrics
from draplugin.checkpoint import Checkpoint
from draplugin.health import DeviceHealth
from draplugin.healthstream import HealthStream
from draplugin.devices import (
    MODE_MIG, Published, PublishedGpu, PublishedMig, counter_set, device_entry, mig_device_entry, mig_partitions,
    select_gpus,
)
from draplugin.prepare import ClaimReader, DraService, PrepareSettings
from draplugin.privatefile import write_private_json
from draplugin.registration import PluginServer, RegistrationService, registration_socket
from draplugin.slices import SlicePublisher
from tessera.config import DraPluginConfig
from tessera.gpuhealth import HealthTracker
from tessera.kubeletapi import DRA_HEALTH_SERVICE_V1, DRA_SERVICE_V1
from tessera.grant import GrantError
from tessera.httpserve import ServeLimits
from tessera.httpserve.metricsport import serve_metrics
from tessera.log import get_logger
from tessera.nodekey import node_grant_key
from tessera.nvml import Nvml
from tessera.nvmlmig import MigError, MigPlacement

log = get_logger("draplugin")


class StartError(RuntimeError):
    """The driver cannot start; the message says why."""


class DraPluginDaemon:
    """Everything one node's DRA driver runs; :meth:`start`, then :meth:`stop` on SIGTERM."""

    def __init__(self, config: DraPluginConfig, client) -> None:
        self.config = config
        self.client = client   # kubernetes.client.ApiClient
        self.node = config.node_name or os.environ.get("NODE_NAME", "") or os.uname().nodename
        self.gpus: dict[str, Published] = {}   # device name -> what it is
        self.mig_gpus: list[tuple[PublishedGpu, list[MigPlacement]]] = []
        self.nvml: Nvml | None = None   # open while the driver runs: health events, MIG devices
        self.health: DeviceHealth | None = None
        self.stream: HealthStream | None = None
        self.driver_version = ""
        self.server: PluginServer | None = None
        self.publisher: SlicePublisher | None = None
        self.registration: RegistrationService | None = None
        self.http = None
        self.checkpoint: Checkpoint | None = None
        self.stopped = threading.Event()

    def start(self) -> None:
        cfg = self.config
        nvml = Nvml().open()
        try:
            gpus = nvml.read_gpus()
            self.driver_version = nvml.driver_version()
            try:
                selected = select_gpus(gpus, cfg.gpus, cfg.gpu_modes, cfg.timeslice_replicas)
                key = node_grant_key(cfg.grant_key_path)
            except (ValueError, GrantError) as err:
                raise StartError(str(err)) from None
            checkpoint = Checkpoint(cfg.checkpoint_path)
            self.checkpoint = checkpoint
            for gpu in selected:
                if gpu.mode == MODE_MIG:
                    self.mig_gpus.append((gpu, nvml.mig_placements(gpu.gpu.index)))
                    self.gpus.update((m.name, m) for m in mig_partitions(gpu, self.mig_gpus[-1][1]))
                else:
                    self.gpus[gpu.name] = gpu
            if self.mig_gpus:
                self._remove_unheld_mig_devices(nvml, checkpoint)
            self.nvml = nvml
        finally:
            if self.nvml is None:
                nvml.close()
        metrics.PREPARED.set_function(lambda: len(checkpoint.claims))
        metrics.PUBLISHED.set(len(self.gpus))
        settings = PrepareSettings(cfg.driver_name, self.node, cfg.cdi_dir, cfg.device_root, key,
                                   cfg.mps_pipe_directory, cfg.mps_shm_directory)
        service = DraService(settings, lambda: self.gpus, ClaimReader(self.client), checkpoint, metrics.observe,
                             mig=self.nvml if self.mig_gpus else None)
        dra_socket = os.path.join(cfg.plugin_path, "dra.sock")
        self.publisher = SlicePublisher(self.client, self.node, cfg.driver_name, self._devices, self._counter_sets)
        tracker = HealthTracker(cfg.application_xids, cfg.fatal_xids, cfg.xid_quiet_period_s, component="draplugin")
        self.health = DeviceHealth(self.nvml, [g.gpu.index for g in selected], tracker, cfg.driver_name,
                                   cfg.unhealthy_taint_effect, self._health_changed)
        self.health.check([], gpus)   # the start's one read: a GPU unreadable then is published tainted
        self.stream = HealthStream(self.node, lambda: {name: g.gpu.index for name, g in self.gpus.items()},
                                   self.health.reason)
        self.registration = RegistrationService(cfg.driver_name, dra_socket, (DRA_SERVICE_V1, DRA_HEALTH_SERVICE_V1))
        self.server = PluginServer(service, self.registration, dra_socket,
                                   registration_socket(cfg.plugins_registry_path, cfg.driver_name), self.stream)
        self.server.start()
        self._write_served(selected)
        self.publisher.start()
        self.health.start()
        self.http = serve_metrics(cfg.listen, metrics.REGISTRY, self.ready, "draplugin-metrics",
                                  ServeLimits.from_config(cfg, max_body_bytes=64 * 1024))
        log.info("dra_plugin_started", node=self.node, driver=cfg.driver_name, devices=sorted(self.gpus),
                 prepared_claims=len(checkpoint.claims))

    def _remove_unheld_mig_devices(self, nvml: Nvml, checkpoint: Checkpoint) -> None:
        held = {(d.gpu_index, d.gpu_instance_id) for c in checkpoint.claims.values() for d in c.devices
                if d.gpu_instance_id is not None}
        for gpu, _ in self.mig_gpus:
            index = gpu.gpu.index
            for gpu_instance_id in nvml.gpu_instance_ids(index):
                if (index, gpu_instance_id) in held:
                    continue
                try:
                    nvml.destroy_mig_device(index, gpu_instance_id)
                    log.warning("mig_device_removed", gpu=index, gpu_instance=gpu_instance_id,
                                reason="on a mig GPU of this driver and held by no prepared claim")
                except MigError as err:
                    log.error("mig_device_remove_failed", gpu=index, gpu_instance=gpu_instance_id, reason=str(err),
                              effect="its memory slices stay taken; claims placed over them fail to prepare")

    def _write_served(self, selected) -> None:
        """The GPUs this driver serves, for the device plugin (:func:`deviceplugin.drashares.dra_gpus_in_use`):
        it takes none of them back on a config edit until the driver, restarted, no longer lists it."""
        write_private_json(Path(self.config.served_gpus_path), {"version": 1, "uuids": [g.gpu.uuid for g in selected]})

    def prepared_gpus(self) -> set[int]:
        """Indices of the GPUs a prepared claim holds (whole, shared or a MIG device of it)."""
        if self.checkpoint is None:
            return set()
        by_uuid = {g.gpu.uuid: g.gpu.index for g in self.gpus.values()}
        return {by_uuid.get(d.uuid, d.gpu_index) for c in self.checkpoint.claims.values() for d in c.devices} - {None}

    def inventory_changed(self) -> None:
        """The device plugin's inventory on the Node changed (it may have let a GPU go): publish again."""
        if self.publisher is not None:
            self.publisher.poke()

    def _health_changed(self) -> None:
        self.publisher.poke()
        self.stream.notify()

    def _devices(self) -> list[dict]:
        entries = []
        for g in self.gpus.values():
            entry = (mig_device_entry(g, self.driver_version) if isinstance(g, PublishedMig)
                     else device_entry(g, self.driver_version))
            taints = self.health.taints(g.gpu.index) if self.health else []
            if taints:
                entry["taints"] = taints
            entries.append(entry)
        return entries

    def _counter_sets(self) -> list[dict]:
        return [counter_set(gpu, placements) for gpu, placements in self.mig_gpus]

    def ready(self) -> tuple[bool, str]:
        """Whether the kubelet registered the driver and its slice is published; why not."""
        if self.registration is None or not self.registration.registered.is_set():
            why = self.registration.last_error if self.registration else ""
            return False, f"not registered with the kubelet{': ' + why if why else ''}"
        if self.publisher is None or not self.publisher.published.is_set():
            return False, "ResourceSlice not published yet"
        return True, f"ok: {len(self.gpus)} devices published"

    def stop(self) -> None:
        if self.health is not None:
            self.health.stop()
        if self.stream is not None:
            self.stream.stop()
        if self.publisher is not None:
            self.publisher.stop()
        try:   # no longer serving: the device plugin may take these GPUs back (their slice goes at the next start)
            os.unlink(self.config.served_gpus_path)
        except OSError:
            pass
        if self.server is not None:
            self.server.stop()
        if self.http is not None:
            self.http.shutdown()
        if self.nvml is not None:
            self.nvml.close()
        self.stopped.set()
