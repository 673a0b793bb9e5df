"""``tessera-exporter``: flags and config, then the poller and the HTTP server until SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from exporter.events import event_sink, kube_client
from exporter.gpuledger import InventoryReader
from exporter.overuse import OveruseTracker
from exporter.podresources import PodResourcesClient
from exporter.poller import Poller
from exporter.records import RecordReader
from exporter.server import MetricsPage, MetricsServer
from tessera.httpserve import ServeLimits
from exporter.settings import ExporterSettings
from tessera.cli_parsers import daemon_parser
from tessera.config import ExporterConfig, daemon_config
from tessera.gpu import NvmlUnavailable
from tessera.log import configure_logging, get_logger
from tessera.nvml import Nvml

log = get_logger("exporter")


def build_parser():
    return daemon_parser(
        "tessera-exporter",
        "Tessera exporter: GPU and MIG telemetry under dcgm-exporter's metric names and labels,\n"
        "attributed to pods and containers (also on shared GPUs), plus Tessera's grant and health metrics.\n"
        "Where NVIDIA's dcgm-exporter already runs on the node (the GPU Operator's default), set\n"
        "--no-dcgm-series (exporter.dcgm_series: false): Tessera then serves only its tessera_* series,\n"
        "joinable with dcgm-exporter's on the UUID label, and no DCGM_* series is scraped twice.\n"
        "Set TESSERA_FAKE_NVML=<node description file> to run on a fake GPU node.",
        ExporterConfig,
        epilog="Environment: NODE_NAME (this node's name where --node-name is not given).",
    )


def main(argv: list[str] | None = None) -> int:
    config = daemon_config(build_parser(), argv, "exporter")
    configure_logging(config.logging.level, config.logging.format)
    settings = ExporterSettings.from_config(config.exporter)
    try:
        nvml = Nvml().open()
    except NvmlUnavailable as err:
        log.error("nvml_unavailable", reason=str(err))
        print(f"tessera-exporter: {err}", file=sys.stderr)
        return 1
    try:
        api = kube_client(settings.kubeconfig)
    except Exception as err:  # noqa: BLE001 - a bad kubeconfig: say so, run without the API
        log.warning("kube_api_unusable", kubeconfig=settings.kubeconfig, error=str(err)[:300])
        api = None
    page = MetricsPage(max_age_s=3 * settings.interval_s + 10, dcgm_compatible_labels=settings.dcgm_compatible_labels,
                       dcgm_series=settings.dcgm_series)
    try:
        server = MetricsServer(page, settings.listen, ServeLimits.from_config(config.exporter, max_body_bytes=64 * 1024))  # GET only
    except (OSError, ValueError) as err:
        print(f"tessera-exporter: cannot listen on {settings.listen}: {err}", file=sys.stderr)
        nvml.close()
        return 1
    pod_resources = PodResourcesClient(settings.pod_resources_socket)
    poller = Poller(
        nvml, pod_resources, RecordReader(settings.state_dir),
        OveruseTracker(event_sink(api, settings.node_name), settings.overuse_dir),
        hostname=settings.node_name, interval_s=settings.interval_s, proc_root=settings.proc_root,
        inventory=InventoryReader(api, settings.node_name) if api is not None else None, publish=page.publish)
    poller.start()
    host, port = server.address
    log.info("exporter_listening", address=f"{host}:{port}", node=settings.node_name,
             pod_resources_socket=settings.pod_resources_socket, interval_s=settings.interval_s,
             dcgm_series=settings.dcgm_series)

    def stop(signum, frame) -> None:
        log.info("exporter_stopping", signal=signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        poller.stop()
        pod_resources.close()
        nvml.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
