"""Tessera's scheduling path on the embedded cluster: the extender, its admission webhook, and a
scheduler loop in place of kube-scheduler.

    with running() as cluster, scheduling(cluster) as sched, device_plugins(cluster):
        ...   # pods asking for Tessera resources are routed, completed, placed and bound

The extender's signing key is made in the cluster's workdir first (``extender.pub`` is what the
device plugins verify assignments with), its webhook is registered with the API server as a
MutatingWebhookConfiguration over HTTPS with its CA as ``caBundle``, and ``SimScheduler`` calls the
extender's filter, prioritize and bind with the JSON kube-scheduler sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import kubernetes

from extender.kubeapi import KubeApi, api_client
from extender.launch import ensure_signing_key, start_extender
from extender.simscheduler import SimScheduler
from simcluster.running import Cluster
from tessera.pki import write_webhook_pki

WEBHOOK_NAME = "pods.tessera.io"


@dataclass
class Scheduling:
    extender: Any   # extender.daemon.ExtenderDaemon
    scheduler: SimScheduler


def prepare_keys(cluster: Cluster) -> None:
    """The extender's Ed25519 key pair in the workdir: start this before the device plugins."""
    ensure_signing_key(cluster.workdir)


def _register_webhook(cluster: Cluster, port: int, ca_bundle: str) -> None:
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
    kubernetes.client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration({
        "metadata": {"name": "tessera"},
        "webhooks": [{"name": WEBHOOK_NAME, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "timeoutSeconds": 10,
                      "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate", "caBundle": ca_bundle},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}]}]}, _preload_content=False)


@contextmanager
def scheduling(cluster: Cluster, policy: str = "fragmentation") -> Iterator[Scheduling]:
    """Run the extender (in this process), register its webhook, and schedule through it; stop on exit."""
    prepare_keys(cluster)
    pki = cluster.workdir / "webhook-tls"
    ca_bundle = write_webhook_pki(pki, ["localhost"], ["127.0.0.1"])
    extender = start_extender(cluster.kubeconfig, cluster.workdir, leader_election=True, policy=policy,
                              tls_cert_path=str(pki / "tls.crt"), tls_key_path=str(pki / "tls.key"))
    scheduler = None
    try:
        _register_webhook(cluster, extender.webhook_port, ca_bundle)
        scheduler = SimScheduler(KubeApi(api_client(str(cluster.kubeconfig))), extender.url).start()
        yield Scheduling(extender, scheduler)
    finally:
        if scheduler is not None:
            scheduler.stop()
        extender.stop()
