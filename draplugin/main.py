"""``tessera-dra-plugin``: flags and config, then run the DRA driver until SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading

from tessera import ANNOTATION_INVENTORY
from tessera.cli_parsers import daemon_parser
from tessera.config import DraPluginConfig, config_from_args, daemon_config
from tessera.config.nodeconfig import NodeConfigWatch, node_config_label, restart_in_place, start_config
from tessera.log import configure_logging, get_logger

RESTART_REQUESTED = 3  # main()'s answer when called in-process and a config change asks for a restart


def build_parser() -> argparse.ArgumentParser:
    return daemon_parser(
        "tessera-dra-plugin",
        "Tessera DRA driver (gpu.tessera.io): one per GPU node, beside the device plugin. Publishes the\n"
        "GPUs of draplugin.gpus as a ResourceSlice, registers with the kubelet as a DRA plugin and\n"
        "prepares the devices kube-scheduler allocated to ResourceClaims (CDI specs with the signed\n"
        "grant the hook verifies). Set TESSERA_FAKE_NVML=<node description file> on a fake GPU node.\n"
        "The config file (--config or TESSERA_CONFIG) is followed while running: on a node labelled\n"
        "tessera.io/node-config=<name>, <name>.yaml beside it is used instead; a change to the\n"
        "draplugin section restarts the driver in place.",
        DraPluginConfig,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = daemon_config(parser, argv, "draplugin")
    configure_logging(config.logging.level, config.logging.format)
    log = get_logger("draplugin")
    cfg = config.draplugin
    from draplugin import metrics
    from draplugin.apiclient import connect
    from draplugin.checkpoint import CheckpointError
    from draplugin.configreload import DriverReload
    from draplugin.daemon import DraPluginDaemon, StartError
    from draplugin.nodewatch import OwnNodeWatch, read_own_node
    from tessera.gpu import NvmlUnavailable

    client = connect(cfg.kubeconfig)
    if client is None:
        return 1
    node_name = cfg.node_name or os.environ.get("NODE_NAME", "") or os.uname().nodename
    label = node_config_label(read_own_node(client, node_name))
    config, chosen, started_digest, default_path = start_config(parser, args, config, label, "draplugin", log)
    cfg = config.draplugin
    daemon = DraPluginDaemon(cfg, client)
    faulthandler.register(signal.SIGUSR1)
    stop, restart = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reload = DriverReload(daemon, config, lambda: (restart.set(), stop.set()))
    watch = NodeConfigWatch(default_path, chosen,
                            lambda path: config_from_args(args, "draplugin", path), reload.apply, label=label,
                            interval_s=cfg.node_config_check_s, logger=log, on_state=metrics.NODE_CONFIG.state,
                            started_digest=started_digest)
    inventory = [None]

    def on_node(node: dict) -> None:
        watch.set_label(node_config_label(node))
        seen = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INVENTORY)
        if seen != inventory[0]:   # the device plugin may have let a GPU of this driver's go: publish again
            inventory[0] = seen
            daemon.inventory_changed()

    node_watch = OwnNodeWatch(client, daemon.node, on_node)
    metrics.NODE_CONFIG.state(chosen, started_digest, True)
    try:
        daemon.start()
    except (NvmlUnavailable, StartError, CheckpointError, OSError) as err:
        log.error("dra_plugin_start_failed", reason=str(err))
        daemon.stop()
        return 1
    watch.start()
    node_watch.start()
    stop.wait()
    node_watch.stop()
    watch.stop()
    log.info("dra_plugin_stopping", reason="node config" if restart.is_set() else "signal")
    daemon.stop()
    if restart.is_set():
        if argv is not None:  # called in-process (tests): say so instead of replacing the caller
            return RESTART_REQUESTED
        restart_in_place(log, "dra_plugin_restarting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
