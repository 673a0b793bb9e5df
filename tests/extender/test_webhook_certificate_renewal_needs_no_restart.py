"""The webhook's (and the verb port's) certificate is renewed without a restart: the Secret is written
again and the kubelet swaps the mounted files atomically (the ``..data`` symlink); new connections get
the new certificate. A renewal read half-written (a key that does not match its certificate) keeps the
certificate served before, and connections go on."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path

import pytest
from extender_cluster import api_server

from simcluster.cluster import NodeSpec
from simcluster.extenders import start_extender
from simcluster.volumes import project
from tessera.pki import write_webhook_pki

SERVICE = "tessera-extender.tessera-system.svc"


def mount(secret: Path, version: str) -> Path:
    """Write a fresh PKI as the kubelet projects a Secret (:func:`simcluster.volumes.project`)."""
    return project(secret, version, lambda data: write_webhook_pki(data, [SERVICE], ["127.0.0.1"], days=1))


def served(port: int) -> str:
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=10)


def same_cert(pem_a: str, pem_b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(pem_a) == ssl.PEM_cert_to_DER_cert(pem_b)


def wait_for(predicate, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s   # a hang guard: progress ends the wait
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


@pytest.fixture
def webhook(tmp_path):
    secret = tmp_path / "webhook-tls"
    secret.mkdir()
    first = mount(secret, "2026_12_07_a")
    with api_server(tmp_path, [NodeSpec("mps-a", "T4", 1, mode="mps")]) as (_, kubeconfig):
        ext = start_extender(kubeconfig, tmp_path, leader_election=False, webhook_listen="127.0.0.1:0",
                             tls_cert_path=str(secret / "tls.crt"), tls_key_path=str(secret / "tls.key"))
        try:
            yield ext, secret, first
        finally:
            ext.stop()


def test_a_renewed_certificate_is_served_without_a_restart(webhook):
    ext, secret, first = webhook
    port = ext.webhook_port
    assert same_cert(served(port), (first / "tls.crt").read_text())
    second = mount(secret, "2026_12_07_b")
    wait_for(lambda: same_cert(served(port), (second / "tls.crt").read_text()), "the renewed certificate served")


def test_a_half_written_renewal_keeps_the_certificate_served_before(webhook):
    ext, secret, first = webhook
    port = ext.webhook_port
    broken = secret / "..2026_12_07_broken"
    write_webhook_pki(broken, [SERVICE], ["127.0.0.1"], days=1)
    (broken / "tls.key").write_bytes((first / "tls.key").read_bytes())   # the new key not written yet
    link = secret / "..data_tmp"
    os.symlink(broken.name, link)
    os.replace(link, secret / "..data")
    tls = ext.webhook.tls
    wait_for(lambda: served(port) and tls._failed is not None, "the half-written renewal looked at")
    assert same_cert(served(port), (first / "tls.crt").read_text()) and tls.reloads == 0
    third = mount(secret, "2026_12_07_c")   # the renewal completed: taken
    wait_for(lambda: same_cert(served(port), (third / "tls.crt").read_text()), "the completed renewal served")
