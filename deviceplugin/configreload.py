"""The device plugin's side of a node config change (:mod:`tessera.config.nodeconfig` finds it).

The GPU modes and time-slicing replicas (``deviceplugin.default_mode``, ``gpu_modes``,
``timeslice_replicas``) are applied while running, as a ``tessera.io/gpu-mode`` label change is: a GPU
whose mode changes waits until it drains, so running pods keep what they were given. Every other key is
read at start only (sockets, keys, paths, the DRA driver's GPUs, ...), so a change to one restarts the
plugin in place: it stops, then runs its own command line again (same process, no container restart),
and starts from the new file as it does after a kubelet restart. A fresh start applies modes at once,
so the restart waits (``node_config_restart_waiting``) while it would change or move a GPU that holds
grants, while a GPU coming back from the DRA driver is still the driver's, and until the plugin has run
``node_config_restart_after_s`` since its last start.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.config import TesseraConfig
from tessera.config.nodeconfig import ChosenConfig, RestartPacing, changed_keys
from tessera.log import get_logger

log = get_logger("deviceplugin")

LIVE_KEYS = frozenset({"deviceplugin.default_mode", "deviceplugin.gpu_modes", "deviceplugin.timeslice_replicas"})
SECTIONS = ("deviceplugin", "draplugin", "logging")
# Of the DRA driver's section, what the plugin reads (daemon.py): the GPUs it leaves out, their modes (it
# supervises the MPS daemon for the driver's MPS GPUs) and the folder of the driver's checkpoint.
DRA_KEYS_READ = frozenset({"draplugin.gpus", "draplugin.gpu_modes", "draplugin.plugin_path"})


class DevicePluginReload:
    """Applies each new node config to a running :class:`deviceplugin.daemon.DevicePluginDaemon`, or
    calls ``request_restart`` when it holds keys that are read at start only."""

    def __init__(self, daemon, config: TesseraConfig, request_restart: Callable[[], None]) -> None:
        self.daemon = daemon
        self.config = config  # what runs now (file and flags)
        self.request_restart = request_restart
        self.pacing = RestartPacing()

    def apply(self, config: TesseraConfig, chosen: ChosenConfig, digest: str) -> bool:
        """``NodeConfigWatch``'s ``apply``: the live keys now, or a restart for the others once it is safe
        (False: not yet; the watch offers the file again at its next look)."""
        keys = [k for k in changed_keys(self.config, config, SECTIONS)
                if not k.startswith("draplugin.") or k in DRA_KEYS_READ]
        if not keys:
            log.info("node_config_same_settings", name=chosen.name, sha256=digest,
                     reason="the new file changes nothing the plugin uses (or a flag overrides it)")
            self.config = config
            return True
        start_only = [k for k in keys if k not in LIVE_KEYS]
        if start_only:
            waiting = self.restart_waits_for(config)
            if waiting:
                self.pacing.say_waiting_once(log, chosen.name, digest, waiting, keys=keys, start_only=start_only)
                return False
            log.warning("node_config_restart", name=chosen.name, sha256=digest, keys=keys, start_only=start_only,
                        reason="keys read at start only: the plugin restarts in place to take them")
            self.request_restart()
            return True
        self.daemon.apply_modes(config.deviceplugin)
        self.config = config
        log.info("node_config_applied", name=chosen.name, sha256=digest, keys=keys,
                 modes=self.daemon.rm.active_modes(), pending=self.daemon.rm.pending_modes(),
                 timeslice_replicas=config.deviceplugin.timeslice_replicas)
        return True

    def restart_waits_for(self, config: TesseraConfig) -> list[str]:
        """What a restart in place waits for: the plugin's minimum run between restarts (a config that
        flips back and forth cannot restart it in a loop), and no GPU moved or changed under grants."""
        least = self.config.deviceplugin.node_config_restart_after_s
        return self.pacing.too_soon(least, "plugin") + self.daemon.restart_blockers(config)
