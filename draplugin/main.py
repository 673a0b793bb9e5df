"""``tessera-dra-plugin``: flags and config, then run the DRA driver until SIGTERM."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading

from tessera.cli_parsers import daemon_parser
from tessera.config import DraPluginConfig, daemon_config
from tessera.log import configure_logging, get_logger


def build_parser() -> argparse.ArgumentParser:
    return daemon_parser(
        "tessera-dra-plugin",
        "Tessera DRA driver (gpu.tessera.io): one per GPU node, beside the device plugin. Publishes the\n"
        "GPUs of draplugin.gpus as a ResourceSlice, registers with the kubelet as a DRA plugin and\n"
        "prepares the devices kube-scheduler allocated to ResourceClaims (CDI specs with the signed\n"
        "grant the hook verifies). Set TESSERA_FAKE_NVML=<node description file> on a fake GPU node.",
        DraPluginConfig,
    )


def main(argv: list[str] | None = None) -> int:
    config = daemon_config(build_parser(), argv, "draplugin")
    configure_logging(config.logging.level, config.logging.format)
    log = get_logger("draplugin")
    cfg = config.draplugin
    from draplugin.apiclient import connect
    from draplugin.checkpoint import CheckpointError
    from draplugin.daemon import DraPluginDaemon, StartError
    from tessera.gpu import NvmlUnavailable

    client = connect(cfg.kubeconfig)
    if client is None:
        return 1
    daemon = DraPluginDaemon(cfg, client)
    faulthandler.register(signal.SIGUSR1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        daemon.start()
    except (NvmlUnavailable, StartError, CheckpointError, OSError) as err:
        log.error("dra_plugin_start_failed", reason=str(err))
        daemon.stop()
        return 1
    stop.wait()
    log.info("dra_plugin_stopping", reason="signal")
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
