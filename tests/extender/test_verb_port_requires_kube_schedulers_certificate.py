"""The verb port answers only kube-scheduler. With ``client_ca_path`` it serves HTTPS and a client must
present a certificate that CA signed, as kube-scheduler's extender ``tlsConfig`` (certFile, keyFile,
caFile) does: a client without one, with one from another CA, or speaking plain HTTP binds nothing.
Without a client CA the extender listens on 127.0.0.1 (a kube-scheduler sidecar's setup) and refuses
to start on an address other hosts reach. Probes and Prometheus get /healthz and /metrics on a plain
port of their own."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import urllib.request

import pytest
from extender_cluster import api_server, bind_args, create, gpu_pod

from simcluster.cluster import NodeSpec
from tessera.config import ExtenderConfig
from tessera.pki import write_webhook_pki

from simcluster.extenders import start_extender

NODES = [NodeSpec("mps-a", "T4", 1, mode="mps")]
SERVICE = "tessera-extender.tessera-system.svc"


@pytest.fixture
def verbs(tmp_path):
    """The extender with client-certificate authentication on its verb port; the PKI folder."""
    pki = tmp_path / "pki"
    write_webhook_pki(pki, [SERVICE], ["127.0.0.1"], days=1, client_name="tessera-scheduler")
    with api_server(tmp_path, NODES) as (srv, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False, client_ca_path=str(pki / "ca.crt"),
                             tls_cert_path=str(pki / "tls.crt"), tls_key_path=str(pki / "tls.key"),
                             metrics_listen="127.0.0.1:0")
        try:
            yield srv, ext, pki
        finally:
            ext.stop()


def scheduler_context(pki, cert: str = "client.crt", key: str = "client.key") -> ssl.SSLContext:
    """What kube-scheduler's tlsConfig makes: trust caFile, present certFile and keyFile."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / cert), str(pki / key))
    return ctx


def post_https(ext, ctx: ssl.SSLContext, verb: str, body: dict) -> tuple[int, dict]:
    host, port = ext.http.address
    conn = http.client.HTTPSConnection(host, port, timeout=60, context=ctx)  # the certificate names 127.0.0.1 too
    try:
        conn.request("POST", f"/{verb}", json.dumps(body).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_kube_scheduler_with_its_client_certificate_is_served(verbs):
    srv, ext, pki = verbs
    assert ext.url.startswith("https://")
    pod = create(srv, gpu_pod("p", {"nvidia.com/mps-core": 40, "nvidia.com/mps-memory": 4}))
    ctx = scheduler_context(pki)
    status, result = post_https(ext, ctx, "filter", {"Pod": pod, "NodeNames": ["mps-a"]})
    assert status == 200 and result["NodeNames"] == ["mps-a"]
    assert post_https(ext, ctx, "bind", bind_args(pod, "mps-a")) == (200, {"Error": ""})
    assert srv.registry.get("pods", "p", "default")["spec"]["nodeName"] == "mps-a"


@pytest.mark.parametrize("client", ["no certificate", "another CA's certificate", "plain HTTP"])
def test_a_client_without_a_valid_certificate_binds_nothing(verbs, tmp_path, client):
    srv, ext, pki = verbs
    pod = create(srv, gpu_pod("p", {"nvidia.com/mps-core": 40, "nvidia.com/mps-memory": 4}))
    if client == "plain HTTP":
        host, port = ext.http.address
        conn = http.client.HTTPConnection(host, port, timeout=60)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("POST", "/bind", json.dumps(bind_args(pod, "mps-a")).encode())
            conn.getresponse().read()
        conn.close()
    else:
        ctx = scheduler_context(pki, cert="")
        if client == "another CA's certificate":
            write_webhook_pki(tmp_path / "other", [SERVICE], days=1, client_name="tessera-scheduler")
            ctx.load_cert_chain(str(tmp_path / "other" / "client.crt"), str(tmp_path / "other" / "client.key"))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            post_https(ext, ctx, "bind", bind_args(pod, "mps-a"))
    assert "nodeName" not in srv.registry.get("pods", "p", "default")["spec"]
    # The port goes on serving kube-scheduler.
    assert post_https(ext, scheduler_context(pki), "bind", bind_args(pod, "mps-a")) == (200, {"Error": ""})


def test_probes_and_prometheus_have_a_plain_port(verbs):
    _, ext, _ = verbs
    host, port = ext.probes.address
    with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=60) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=60) as resp:
        assert b"tessera_extender_decisions" in resp.read()
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", "/bind", b"{}")
    assert conn.getresponse().status == 404  # no verb is served there
    conn.close()


def test_without_a_client_ca_the_verbs_listen_on_loopback_and_other_addresses_are_refused(tmp_path):
    assert ExtenderConfig().listen.startswith("127.0.0.1:") and ExtenderConfig().client_ca_path == ""
    out = subprocess.run([sys.executable, "-m", "extender.main", "--listen", "0.0.0.0:8888",
                          "--kubeconfig", str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "extender.listen 0.0.0.0:8888 is reachable from other hosts" in out.stderr
    assert "client_ca_path" in out.stderr
    ExtenderConfig(listen="0.0.0.0:8888", client_ca_path="/etc/tessera/scheduler-ca.crt")  # accepted
    ExtenderConfig(listen="[::1]:8888")  # loopback
    ExtenderConfig(listen="0.0.0.0:8888", allow_unauthenticated_verbs=True)  # the admin's explicit choice
