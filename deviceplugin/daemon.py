"""The device plugin daemon: NVML, the resource manager, one server per resource, and the workers.

Start order: read the GPUs; read the Node (its mode label, and fatal Xids its inventory recorded before
a restart, :mod:`deviceplugin.healthrecord`) and the kubelet's pod-resources (so modes, health and
holdings are right before anything is advertised); serve and register every resource; then the
health loop, the pod watch, the ledger worker, the inventory writer and the MPS supervisor.

The device plugin owns the node's MPS control daemon: it supervises it (and alone sets its defaults)
whenever the node has an MPS GPU, its own or one the DRA driver serves in ``mps`` mode (the config's
``draplugin`` section, which both daemons read), whose clients the driver points at the same daemon.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable

from deviceplugin import metrics
from deviceplugin.allocator import Allocator
from deviceplugin.apiclient import mode_label_of
from deviceplugin.drashares import dra_gpus_in_use
from deviceplugin.healthrecord import carry_over
from deviceplugin.healthwatch import HealthWatch
from deviceplugin.keys import extender_public_key, node_grant_key
from deviceplugin.registration import Registrar
from deviceplugin.response import ResponseSettings
from deviceplugin.rm import HealthTracker, NodeDevices
from deviceplugin.server import ResourceServer
from tessera.config import DevicePluginConfig, DraPluginConfig, TesseraConfig
from tessera.httpserve import ServeLimits
from tessera.log import get_logger
from tessera.nvml import Nvml

log = get_logger("deviceplugin")


class DevicePluginDaemon:
    """Everything one node's plugin runs; :meth:`start`, then :meth:`stop` on SIGTERM."""

    def __init__(self, config: DevicePluginConfig, *, mps_control_binary: str | None = None,
                 api=None, dra: DraPluginConfig | None = None) -> None:
        self.config = config
        self.dra = dra or DraPluginConfig()   # the node config's draplugin section
        self.dra_gpus = frozenset(self.dra.gpus)  # served by the DRA driver: never advertised here
        self.node = config.node_name or os.environ.get("NODE_NAME", "") or os.uname().nodename
        self.mps_control_binary = mps_control_binary
        self.api = api  # deviceplugin.apiclient.NodeApi or None (no API server: kubelet-only mode)
        self.nvml = Nvml()
        self.rm: NodeDevices | None = None
        self.registrar: Registrar | None = None
        self.workers: list = []
        self.http = None
        self.stopped = threading.Event()
        self.all_gpus: list = []
        self.on_node: Callable[[dict], None] | None = None  # told of every Node seen (set before start)

    def start(self, node_doc: dict | None) -> None:
        """Open NVML, then run every worker. ``node_doc`` is this plugin's Node as read at start (main reads
        it once, for the ``tessera.io/node-config`` label too): its ``tessera.io/gpu-mode`` label and the
        fatal Xids recorded before a restart; None when it is absent, unreadable or there is no API server.
        The Node watch then follows every later version."""
        cfg = self.config
        self.nvml.open()
        gpus = self.nvml.read_gpus()
        self.all_gpus = list(gpus)   # the DRA driver's too: a config edit may move one between them
        dra_mps = [g for g in gpus if g.index in self.dra_gpus and self.dra.gpu_modes.get(g.index) == "mps"]
        if self.dra_gpus:
            log.info("gpus_left_to_dra_driver", indices=sorted(self.dra_gpus),
                     uuids=[g.uuid for g in gpus if g.index in self.dra_gpus], mps=[g.index for g in dra_mps])
            gpus = [g for g in gpus if g.index not in self.dra_gpus]
        label = mode_label_of(node_doc)
        health = HealthTracker(cfg.application_xids, cfg.fatal_xids, cfg.xid_quiet_period_s)
        self.rm = NodeDevices(gpus, default_mode=cfg.default_mode, gpu_modes=cfg.gpu_modes,
                              replicas=cfg.timeslice_replicas, health=health, label_mode=label)
        self.rm.apply_reads(gpus)
        if node_doc is not None:  # before anything is advertised: a fatal Xid seen before a restart stays
            carry_over(self.rm, node_doc, cfg.fatal_xids)
        from deviceplugin.podresources import PodResourcesClient, PodResourcesSync

        self.pod_resources = PodResourcesClient(cfg.pod_resources_socket)
        holdings = self.pod_resources.holdings_or_none()
        if holdings is not None:
            self.rm.set_holdings(holdings)
        settings = ResponseSettings(node=self.node, grant_key=node_grant_key(cfg.grant_key_path),
                                    device_list_strategy=cfg.device_list_strategy,
                                    mps_pipe_directory=cfg.mps_pipe_directory,
                                    mps_shm_directory=cfg.mps_shm_directory, device_root=cfg.device_root)
        pods = recorder = None
        if self.api is not None:
            from deviceplugin.ledgerwriter import LedgerWriter
            from deviceplugin.podwatch import PodWatch

            pods = PodWatch(self.api, self.node, extender_public_key(cfg.assignment_public_key_path))
            recorder = LedgerWriter(self.api, self.rm, self.node, pods)
            self.workers += [pods, recorder]
        self.allocator = Allocator(self.rm, settings, pods, recorder)
        self.registrar = Registrar(cfg.device_plugin_path, self._make_server, self.rm.resources)
        self.workers.insert(0, HealthWatch(self.nvml, self.rm))
        sync = PodResourcesSync(self.pod_resources, self.rm, uid_of=pods.uid_of if pods else None)
        if recorder is not None:
            recorder.sync = sync
            sync.listeners.append(recorder.on_holdings)
        self.workers.append(sync)
        if self.api is not None:
            from deviceplugin.nodeinfo import NodeInfoWriter

            self.workers.append(NodeInfoWriter(self.api, self.rm, self.node, cfg.fatal_xids,
                                               carried_over=node_doc is not None, gfd=cfg.gfd_labels,
                                               versions=self._driver_versions(), on_node=self.on_node))
            if cfg.evict_on_overuse:
                from deviceplugin.eviction import OveruseEvictor

                self.workers.append(OveruseEvictor(self.api, cfg.overuse_dir))
        if self.mps_control_binary:  # idle until a GPU is in mps mode (the node label or config may say so later)
            from deviceplugin.drashares import DraMpsShares
            from deviceplugin.mpsd import MpsSupervisor

            shares = DraMpsShares(self.dra.checkpoint_path, dra_mps) if dra_mps else None
            self.workers.insert(0, MpsSupervisor(self.mps_control_binary, cfg, self.rm, dra=shares))
            self.rm.supervise_mps()
        for worker in self.workers:
            worker.start()
        self.registrar.start()
        self.http = metrics.serve(cfg.listen, self.ready, ServeLimits.from_config(cfg, max_body_bytes=64 * 1024))  # GET only
        log.info("device_plugin_started", node=self.node, resources=self.rm.resources(),
                 modes=self.rm.active_modes(), api=self.api is not None)

    def apply_modes(self, cfg: DevicePluginConfig) -> None:
        """A node config's GPU modes and time-slicing replicas, while running (a GPU that holds grants
        changes once it drains)."""
        self.rm.set_mode_settings(cfg.default_mode, cfg.gpu_modes, cfg.timeslice_replicas)
        self.config = dataclasses.replace(self.config, default_mode=cfg.default_mode, gpu_modes=cfg.gpu_modes,
                                          timeslice_replicas=cfg.timeslice_replicas)

    def restart_blockers(self, config: TesseraConfig) -> list[str]:
        """Why restarting with ``config`` now would move or change a GPU under live grants (empty: it
        would not). A fresh start applies modes at once, so every change a GPU waits for must be done."""
        cfg, rm = config.deviceplugin, self.rm
        busy, active = rm.busy_gpus(), rm.active_modes()
        out = [f"GPU {i} waits to change to {mode} until it drains" for i, mode in sorted(rm.pending_modes().items())]
        new_dra = set(config.draplugin.gpus)
        desired = rm.desired_with(cfg.default_mode, cfg.gpu_modes)
        for index in sorted(busy):
            if index in new_dra:
                out.append(f"GPU {index} holds grants and would go to the DRA driver")
            elif desired.get(index) != active.get(index):
                out.append(f"GPU {index} holds grants and would change from {active.get(index)} to {desired.get(index)}")
            elif active.get(index) == "timeslice" and cfg.timeslice_replicas < rm.timeslice_replicas:
                out.append(f"GPU {index} holds time-sliced grants and would have fewer replicas")
        returning = set(self.dra.gpus) - new_dra
        if returning:
            held = dra_gpus_in_use(self.dra.checkpoint_path, self.dra.served_gpus_path,
                                   [g for g in self.all_gpus if g.index in returning])
            out += [f"GPU {i} is still the DRA driver's ({why})" for i, why in sorted(held.items())]
        return out

    def _driver_versions(self) -> tuple[str, str]:
        """The driver's version and the CUDA version it runs, for the node labels; empty where NVML cannot say."""
        try:
            return self.nvml.driver_version(), self.nvml.cuda_version()
        except Exception as exc:  # noqa: BLE001 - labels without versions, the plugin still serves
            log.warning("driver_version_unread", reason=str(exc))
            return "", ""

    def _make_server(self, resource: str) -> ResourceServer:
        return ResourceServer(resource, self.rm, self.allocator, self.config.device_plugin_path)

    def ready(self) -> tuple[bool, str]:
        if self.registrar is None:
            return False, "starting"
        return self.registrar.ready()

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
        for worker in reversed(self.workers):
            worker.stop()
        if self.registrar is not None:
            self.registrar.stop()
        self.nvml.close()
        self.stopped.set()
        log.info("device_plugin_stopped", node=self.node)
