"""``tessera-device-plugin``: flags and config, then run the daemon until SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading

from tessera.cli_parsers import daemon_parser
from tessera.config import DevicePluginConfig, daemon_config
from tessera.log import configure_logging, get_logger

def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        "tessera-device-plugin",
        "Tessera device plugin: one per GPU node. Registers nvidia.com/gpu, nvidia.com/mig-<profile>,\n"
        "nvidia.com/mps-core, nvidia.com/mps-memory and nvidia.com/gpu.shared with the kubelet,\n"
        "keeps their health, and answers allocations from the signed ledger.\n"
        "Set TESSERA_FAKE_NVML=<node description file> to run on a fake GPU node.",
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
    from deviceplugin.apiclient import connect
    from deviceplugin.daemon import DevicePluginDaemon
    from tessera.gpu import NvmlUnavailable

    api = connect(cfg.kubeconfig, cfg.node_name)
    if args.remove_labels:
        return remove_labels(api, args.all_nodes) if api is not None else 1
    daemon = DevicePluginDaemon(cfg, mps_control_binary=cfg.mps_control_binary, api=api,
                                dra=config.draplugin)
    faulthandler.register(signal.SIGUSR1)  # thread dump on demand
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        daemon.start()
    except NvmlUnavailable as err:
        log.error("nvml_unavailable", reason=str(err))
        return 1
    stop.wait()
    log.info("device_plugin_stopping", reason="signal")
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
