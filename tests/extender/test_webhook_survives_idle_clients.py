"""One idle TCP connection used to stop the admission webhook: the TLS handshake ran inside accept()
on the serving thread, with no timeout, so with ``failurePolicy: Fail`` no GPU pod could be created.
Now a client that sends nothing, stops in the middle of its ClientHello or trickles its headers costs
the webhook a socket, not its serving thread: pods are admitted while 200 of them hang on, the
extender's threads stay bounded, each such client is cut off at its deadline, and connections beyond
the limit are closed at once while the port goes on accepting."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import threading

import pytest
from extender_cluster import api_server, gpu_pod
from kubernetes import client

from simcluster.cluster import NodeSpec
from tessera.pki import write_webhook_pki
from tessera.slowclients import SlowClients, client_hello

from simcluster.extenders import start_extender

NODES = [NodeSpec("t4", "T4", 1, mode="mps")]
SERVICE = "tessera-extender.tessera-system.svc"
GUARD_S = 120  # hang guard only: every wait below ends on progress long before this


def review(name: str) -> dict:
    """An AdmissionReview for a pod asking for an MPS share, as the API server sends it."""
    pod = gpu_pod(name, {"nvidia.com/mps-core": 50})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": f"uid-{name}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": "CREATE", "namespace": "default", "object": pod}}


def mutate(port: int, ca_file: str, name: str) -> dict:
    """POST one AdmissionReview to /mutate over TLS, verifying the webhook's certificate."""
    ctx = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=GUARD_S, context=ctx)
    try:
        conn.request("POST", "/mutate", json.dumps(review(name)).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return {"status": resp.status, **json.loads(resp.read())}
    finally:
        conn.close()


def client_context(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    return ctx


@pytest.fixture
def webhook(tmp_path):
    """Start the extender (with these settings) and register its webhook in an API server; gives the
    API, the webhook's port, the CA file that signed its certificate, and the extender."""
    with contextlib.ExitStack() as stack:

        def start(**settings):
            ca = write_webhook_pki(tmp_path, [SERVICE], ["127.0.0.1"], days=1)
            (tmp_path / "ca.crt").write_bytes(base64.b64decode(ca))
            port: dict[str, int] = {}
            srv, kubeconfig = stack.enter_context(api_server(
                tmp_path, NODES, service_resolver=lambda ns, name, p: ("127.0.0.1", port["webhook"])))
            ext = start_extender(kubeconfig, tmp_path, leader_election=False, tls_cert_path=str(tmp_path / "tls.crt"),
                                 tls_key_path=str(tmp_path / "tls.key"), **settings)
            stack.callback(ext.stop)
            port["webhook"] = ext.webhook_port
            api = client.ApiClient(client.Configuration(host=srv.url))
            client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration({
                "metadata": {"name": "tessera"},
                "webhooks": [{"name": "pods.tessera.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                              "failurePolicy": "Fail", "timeoutSeconds": 30,
                              "clientConfig": {"service": {"namespace": "tessera-system", "name": "tessera-extender",
                                                           "path": "/mutate", "port": 443}, "caBundle": ca},
                              "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                         "resources": ["pods"]}]}]})
            return client.CoreV1Api(api), ext.webhook_port, str(tmp_path / "ca.crt"), ext

        yield start


def test_pods_are_admitted_while_an_idle_client_a_half_hello_and_200_slow_clients_hang_on(webhook):
    # A long request timeout keeps every slow client connected for the whole test; they all come from
    # 127.0.0.1 here, as 200 tenants' pods would from 200 addresses, so the per-client bound is lifted.
    core, port, ca_file, ext = webhook(http_request_timeout_s=600, http_max_connections_per_client=1000)
    threads_before = threading.active_count()
    address = ("127.0.0.1", port)
    with SlowClients(address, tls=client_context(ca_file)) as slow, SlowClients(address) as raw:
        slow.idle(1).half_hello(1).trickling(100).start()  # 100 trickle a request head inside TLS
        raw.trickling(100, payload=client_hello()).start()  # 100 trickle their ClientHello
        for i in range(5):
            answer = mutate(port, ca_file, f"direct-{i}")
            assert answer["status"] == 200 and answer["response"]["allowed"] is True
            assert answer["response"]["uid"] == f"uid-direct-{i}" and "patch" in answer["response"]
        for i in range(5):  # through the API server, within its webhook call's timeoutSeconds
            created = core.create_namespaced_pod("default", gpu_pod(f"through-api-{i}", {"nvidia.com/mps-core": 50},
                                                                    scheduler="default-scheduler"))
            assert created.spec.scheduler_name == "tessera-scheduler"
            assert "nvidia.com/mps-memory" in created.spec.containers[0].resources.limits
        assert slow.connected == 102 and raw.connected == 100, "the slow clients were connected throughout"
        grown = threading.active_count() - threads_before
        assert grown <= ext.config.http_workers * 3 + 4, f"{grown} more threads with 200 slow clients connected"


def test_idle_half_hello_and_trickling_clients_are_cut_off_and_the_webhook_still_answers(webhook):
    _, port, ca_file, _ = webhook(http_request_timeout_s=1.0)
    with SlowClients(("127.0.0.1", port), tls=client_context(ca_file), every_s=0.2) as slow:
        slow.idle(3).half_hello(3).trickling(3).start()
        # A trickler sends a byte every 0.2 s, well inside any per-read timeout: only a deadline on
        # the whole request cuts it off.
        assert slow.wait_closed(GUARD_S), f"{slow.connected} slow clients still connected"
    answer = mutate(port, ca_file, "after")
    assert answer["status"] == 200 and answer["response"]["allowed"] is True


def test_at_the_limit_the_connection_waiting_longest_makes_room_for_a_request(webhook):
    _, port, ca_file, ext = webhook(http_max_connections=20, http_request_timeout_s=600)
    with SlowClients(("127.0.0.1", port), source="127.0.0.2") as held:
        held.idle(20).start()  # every slot taken by connections that send nothing
        answer = mutate(port, ca_file, "at-the-limit")  # from 127.0.0.1
        assert answer["status"] == 200 and answer["response"]["allowed"] is True
        assert held.wait_closed(GUARD_S, at_most=19), "no idle connection made room"
    assert ext.webhook.counts["evicted"] >= 1


def test_one_client_cannot_hold_more_than_its_share_of_connections(webhook):
    _, port, ca_file, ext = webhook(http_max_connections_per_client=8, http_request_timeout_s=600)
    with SlowClients(("127.0.0.1", port), source="127.0.0.2") as held:
        held.idle(8).start()
        with SlowClients(("127.0.0.1", port), source="127.0.0.2") as excess:
            excess.idle(4).start()
            # Closed by the per-client bound, not by a timeout (600 s here): the guard is far shorter.
            assert excess.wait_closed(GUARD_S), f"{excess.connected} connections over the client's share still open"
        assert held.connected == 8
        answer = mutate(port, ca_file, "another-client")  # 127.0.0.1 is another client: served
        assert answer["status"] == 200 and answer["response"]["allowed"] is True
    assert ext.webhook.counts["refused"] >= 4


def test_a_review_larger_than_any_api_server_sends_is_refused_before_it_is_read(webhook):
    _, port, ca_file, _ = webhook()
    ctx = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=GUARD_S, context=ctx)
    try:
        conn.putrequest("POST", "/mutate")
        conn.putheader("Content-Length", str(5 * 1024 * 1024))
        conn.endheaders()  # no body sent: the answer comes from the head alone
        resp = conn.getresponse()
        assert resp.status == 400 and b"over the limit" in resp.read()
    finally:
        conn.close()
