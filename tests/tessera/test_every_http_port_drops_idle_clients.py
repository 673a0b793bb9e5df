"""Every HTTP port Tessera serves (the extender's verb port, the device plugin's and the exporter's
/metrics and /healthz) closes a client that connects and sends nothing, one that trickles its
headers and one that trickles its body, at the request timeout its daemon's config sets; and answers the next scraper or caller.
They used to hold such a client, and a thread for it, for ever (the verb port held 260 threads for
250 slow clients)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from deviceplugin import metrics as deviceplugin_metrics
from exporter.server import MetricsPage, MetricsServer
from simcluster.extenders import start_extender
from simcluster.apiserver import ApiServer
from tessera.config import DevicePluginConfig, ExporterConfig
from tessera.httpserve import ServeLimits
from tessera.slowclients import SlowClients

TIMEOUT_S = 0.5  # the ports' request timeout here
GUARD_S = 120  # hang guard only
BODY_TO_COME = b"POST /healthz HTTP/1.1\r\nHost: tessera\r\nContent-Length: 100000\r\n\r\n"  # then a byte a tick


@contextlib.contextmanager
def extender_verbs(tmp_path) -> Iterator[tuple[str, int]]:
    with ApiServer() as srv:
        ext = start_extender(srv.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path, leader_election=False,
                             http_request_timeout_s=TIMEOUT_S)
        try:
            yield ext.http.address
        finally:
            ext.stop()


@contextlib.contextmanager
def deviceplugin_port(tmp_path) -> Iterator[tuple[str, int]]:
    config = dataclasses.replace(DevicePluginConfig(), listen="127.0.0.1:0", http_request_timeout_s=TIMEOUT_S)
    port = deviceplugin_metrics.serve(config.listen, lambda: (True, "ok"), ServeLimits.from_config(config))
    try:
        yield port.address
    finally:
        port.shutdown()


@contextlib.contextmanager
def exporter_port(tmp_path) -> Iterator[tuple[str, int]]:
    config = dataclasses.replace(ExporterConfig(), listen="127.0.0.1:0", http_request_timeout_s=TIMEOUT_S)
    server = MetricsServer(MetricsPage(max_age_s=60), config.listen, ServeLimits.from_config(config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.address
    finally:
        server.shutdown()
        thread.join(timeout=10)


PORTS = {"extender verbs": extender_verbs, "device plugin metrics": deviceplugin_port,
         "exporter metrics": exporter_port}


def healthz_status(address: tuple[str, int]) -> int:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/healthz", timeout=GUARD_S) as resp:
            return resp.status
    except urllib.error.HTTPError as err:  # 503: up, not ready (the exporter before its first collection)
        return err.code


@pytest.mark.parametrize("port", sorted(PORTS))
def test_idle_and_trickling_clients_are_dropped_and_the_port_answers(tmp_path, port):
    with PORTS[port](tmp_path) as address:
        with SlowClients(address, every_s=0.1) as slow:
            slow.idle(2).trickling(2).trickling(2, payload=b"", first=BODY_TO_COME).start()
            assert slow.wait_closed(GUARD_S), f"{port}: {slow.connected} idle or trickling clients still connected"
        assert healthz_status(address) in (200, 503)
