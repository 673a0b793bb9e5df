"""``tessera-extender``: flags and config, the signing key, the API client; then the daemon until SIGTERM."""

from __future__ import annotations

import gc
import signal
import sys
import threading

from tessera.assignment import AssignmentError, load_private_key
from tessera.cli_parsers import daemon_parser
from tessera.config import ExtenderConfig, daemon_config
from tessera.log import configure_logging, get_logger

log = get_logger("extender")


def build_parser():
    return daemon_parser(
        "tessera-extender",
        "Tessera scheduler extender and admission webhook: kube-scheduler calls it to filter,\n"
        "prioritize, bind and preempt pods that ask for Tessera resources; it chooses the node and\n"
        "the GPU and binds it with the signed assignment in the Binding.",
        ExtenderConfig,
    )


def main(argv: list[str] | None = None) -> int:
    config = daemon_config(build_parser(), argv, "extender")
    configure_logging(config.logging.level, config.logging.format)
    settings = config.extender
    from extender.daemon import typical_shapes
    from extender.placement.shapes import ShapeError

    try:
        shapes = typical_shapes(settings)
    except ShapeError as err:
        print(f"tessera-extender: extender.typical_shapes: {err}", file=sys.stderr)
        return 2
    try:
        key = load_private_key(settings.signing_key_path)
    except (OSError, ValueError, AssignmentError) as err:
        print(f"tessera-extender: cannot read the signing key {settings.signing_key_path}: {err}", file=sys.stderr)
        return 1
    from extender.daemon import ExtenderDaemon
    from extender.kubeapi import KubeApi, api_client

    try:
        api = KubeApi(api_client(settings.kubeconfig))
    except Exception as err:  # noqa: BLE001 - a bad kubeconfig: say so and stop
        print(f"tessera-extender: cannot reach the API server: {err}", file=sys.stderr)
        return 1
    try:
        daemon = ExtenderDaemon(settings, api, key, shapes=shapes)
    except (OSError, ValueError) as err:
        print(f"tessera-extender: cannot serve: {err}", file=sys.stderr)
        return 1
    done = threading.Event()

    def stop(signum, frame) -> None:
        log.info("extender_stopping", signal=signum)
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.start()
    if daemon.wait_synced(300):
        # The cache is a large, long-lived heap: keep the cyclic GC from walking it on every request
        # (full collections of thousands of nodes' objects were the latency tail).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
    done.wait()
    daemon.stop()
    api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
