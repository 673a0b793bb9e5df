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
    return parser


def main(argv: list[str] | None = None) -> int:
    config = daemon_config(build_parser(), argv, "deviceplugin")
    configure_logging(config.logging.level, config.logging.format)
    log = get_logger("deviceplugin")
    cfg = config.deviceplugin
    from deviceplugin.apiclient import connect
    from deviceplugin.daemon import DevicePluginDaemon
    from tessera.gpu import NvmlUnavailable

    api = connect(cfg.kubeconfig, cfg.node_name)
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
