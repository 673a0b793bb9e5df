"""``tessera-device-plugin``: flags and config, then run the daemon until SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading

from tessera.cli_parsers import daemon_parser
from tessera.config import DevicePluginConfig, config_from_args, daemon_config
from tessera.config.nodeconfig import NodeConfigWatch, node_config_label, restart_in_place, start_config
from tessera.log import configure_logging, get_logger

RESTART_REQUESTED = 3  # main()'s answer when called in-process and a config change asks for a restart

def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        "tessera-device-plugin",
        "Tessera device plugin: one per GPU node. Registers nvidia.com/gpu, nvidia.com/mig-<profile>,\n"
        "nvidia.com/mps-core, nvidia.com/mps-memory and nvidia.com/gpu.shared with the kubelet,\n"
        "keeps their health, and answers allocations from the signed ledger.\n"
        "Set TESSERA_FAKE_NVML=<node description file> to run on a fake GPU node.\n"
        "The config file (--config or TESSERA_CONFIG) is followed while running: on a node labelled\n"
        "tessera.io/node-config=<name>, <name>.yaml beside it is used instead; GPU modes and replicas\n"
        "change live, other keys make the plugin restart in place.",
        DevicePluginConfig,
    )
    parser.add_argument("--remove-labels", action="store_true",
                        help="one-shot, for uninstall: remove the node labels Tessera wrote (recorded in the Node "
                             "annotation tessera.io/owned-labels) from this node, and the record, then exit; labels "
                             "another writer put there or changed since stay")
    parser.add_argument("--all-nodes", action="store_true",
                        help="with --remove-labels: from every Node (needs list on nodes, e.g. an admin's kubeconfig)")
    return parser


def remove_labels(api, all_nodes: bool) -> int:
    """``--remove-labels``: Tessera's own labels off this Node (or every Node); 0, or 1 if one failed."""
    from deviceplugin.nodelabels import remove_owned

    log = get_logger("deviceplugin")
    failed = 0
    for node in api.node_names() if all_nodes else [api.node]:
        try:
            removed = remove_owned(api.for_node(node))
        except Exception as exc:  # noqa: BLE001 - say which node, go on with the others
            log.error("node_labels_remove_failed", node=node, reason=str(exc))
            failed = 1
            continue
        log.info("node_labels_removed", node=node, labels=removed)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = daemon_config(parser, argv, "deviceplugin")
    configure_logging(config.logging.level, config.logging.format)
    log = get_logger("deviceplugin")
    cfg = config.deviceplugin
    from deviceplugin import metrics
    from deviceplugin.apiclient import connect
    from deviceplugin.configreload import DevicePluginReload
    from deviceplugin.daemon import DevicePluginDaemon
    from tessera.gpu import NvmlUnavailable

    api = connect(cfg.kubeconfig, cfg.node_name)
    if args.remove_labels:
        return remove_labels(api, args.all_nodes) if api is not None else 1
    node = api.node_or_none() if api is not None else None   # read once: the config's label, then the daemon's start
    label = node_config_label(node)
    config, chosen, started_digest, default_path = start_config(parser, args, config, label, "deviceplugin", log)
    cfg = config.deviceplugin
    daemon = DevicePluginDaemon(cfg, mps_control_binary=cfg.mps_control_binary, api=api,
                                dra=config.draplugin)
    faulthandler.register(signal.SIGUSR1)  # thread dump on demand
    stop, restart = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reload = DevicePluginReload(daemon, config, lambda: (restart.set(), stop.set()))
    watch = NodeConfigWatch(default_path, chosen,
                            lambda path: config_from_args(args, "deviceplugin", path), reload.apply,
                            label=label,
                            interval_s=cfg.node_config_check_s, logger=log,
                            on_state=metrics.NODE_CONFIG.state, started_digest=started_digest)
    daemon.on_node = lambda node: watch.set_label(node_config_label(node))
    metrics.NODE_CONFIG.state(chosen, started_digest, True)
    try:
        daemon.start(node)
    except NvmlUnavailable as err:
        log.error("nvml_unavailable", reason=str(err))
        return 1
    watch.start()
    stop.wait()
    watch.stop()
    log.info("device_plugin_stopping", reason="node config" if restart.is_set() else "signal")
    daemon.stop()
    if restart.is_set():
        if argv is not None:  # called in-process (tests): say so instead of replacing the caller
            return RESTART_REQUESTED
        restart_in_place(log, "device_plugin_restarting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
