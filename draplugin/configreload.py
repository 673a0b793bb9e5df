"""The DRA driver's side of a node config change (:mod:`tessera.config.nodeconfig` finds it).

Every key the driver reads (its ``draplugin`` section and ``logging``) is read at start only, so a change
to one restarts the driver in place: it stops, then runs its own command line again (same process, no
container restart). The restart waits (``node_config_restart_waiting``) while a GPU leaving
``draplugin.gpus`` holds a prepared claim, and until the driver has run ``node_config_restart_after_s``
since its last start.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.config import TesseraConfig
from tessera.config.nodeconfig import ChosenConfig, RestartPacing, changed_keys
from tessera.log import get_logger

SECTIONS = ("draplugin", "logging")  # what the driver reads of the config file: all of it at start only


class DriverReload:
    """``NodeConfigWatch``'s ``apply`` for the driver: every key it reads is read at start, so a change to
    one asks for a restart in place, once it is safe: not while a GPU leaving ``draplugin.gpus`` holds a
    prepared claim, and not within ``node_config_restart_after_s`` of the last start (False: not yet, the
    file is offered again at the next look). A file that changes nothing the driver reads is only noted."""

    def __init__(self, daemon, config: TesseraConfig, request_restart: Callable[[], None]) -> None:
        self.daemon, self.config, self.request_restart = daemon, config, request_restart
        self.pacing = RestartPacing()

    def apply(self, config: TesseraConfig, chosen: ChosenConfig, digest: str) -> bool:
        """A restart in place for any changed key once nothing waits (False: not yet)."""
        log = get_logger("draplugin")
        keys = changed_keys(self.config, config, SECTIONS)
        if not keys:
            log.info("node_config_same_settings", name=chosen.name, sha256=digest)
            self.config = config
            return True
        waiting = self.restart_waits_for(config)
        if waiting:
            self.pacing.say_waiting_once(log, chosen.name, digest, waiting, keys=keys)
            return False
        log.warning("node_config_restart", name=chosen.name, sha256=digest, keys=keys, start_only=keys,
                    reason="the driver reads its config at start only: it restarts in place to take them")
        self.request_restart()
        return True

    def restart_waits_for(self, config: TesseraConfig) -> list[str]:
        """What a restart in place waits for: the driver's minimum run between restarts, and no GPU leaving
        ``draplugin.gpus`` under a prepared claim."""
        leaving = set(self.config.draplugin.gpus) - set(config.draplugin.gpus)
        held = sorted(leaving & self.daemon.prepared_gpus())
        return (self.pacing.too_soon(self.config.draplugin.node_config_restart_after_s, "driver")
                + [f"GPU {i} leaves draplugin.gpus but a prepared claim holds it" for i in held])
