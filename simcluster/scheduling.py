"""Tessera's scheduling path on the embedded cluster: the extender, its admission webhook, and a
scheduler loop in place of kube-scheduler.

    with running() as cluster, scheduling(cluster) as sched, device_plugins(cluster):
        ...   # pods asking for Tessera resources are routed, completed, placed and bound

The extender's signing key is made in the cluster's workdir first (``extender.pub`` is what the
device plugins verify assignments with), the extender runs as its ServiceAccount, its webhook is
registered with the API server as a MutatingWebhookConfiguration over HTTPS with its CA as
``caBundle`` (the rules of deploy/base/webhook.yaml), and ``SimScheduler`` calls the
extender's filter, prioritize and bind with the JSON kube-scheduler sends.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

from extender.kubeapi import KubeApi, api_client
from simcluster.extenders import ensure_signing_key, free_port, spawn_extender, start_extender
from simcluster.simscheduler import SimScheduler
from simcluster.processes import stop_process
from simcluster.readiness import Awaited, http_ok, wait_ready
from simcluster.embedded import Cluster
from tessera import NAMESPACE, SERVICE_ACCOUNT_EXTENDER
from tessera.pki import write_webhook_pki

WEBHOOK_NAME = "pods.tessera.io"
# What the webhook is sent, as deploy/base/webhook.yaml registers it: pod creations, and updates of the pod
# itself (PUT and PATCH, where a user could rewrite tessera.io/* annotations). Not pods/status (the
# kubelet's many writes) and not pods/binding (the extender's assignment arrives in the Binding).
WEBHOOK_RULES = [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                  "resources": ["pods"], "scope": "Namespaced"}]


@dataclass
class Scheduling:
    extender: Any   # extender.daemon.ExtenderDaemon, or the tessera-extender process (Popen)
    scheduler: SimScheduler | None
    url: str        # the extender's HTTP address (filter, prioritize, bind, preempt, /metrics)
    log: Path | None = None  # the extender process's log

    def awaited(self, ready: Callable[[], object], phase: Callable[[], object] | None = None,
                task: str = "") -> Awaited:
        """Something the extender is to do, as a wait sees it: its process (where it has one) and its log."""
        proc = self.extender if isinstance(self.extender, subprocess.Popen) else None
        return Awaited("tessera-extender", ready, proc, self.log, phase, task)


def prepare_keys(cluster: Cluster) -> None:
    """The extender's Ed25519 key pair in the workdir: start this before the device plugins."""
    ensure_signing_key(cluster.workdir)


def webhook_configuration(client_config: dict) -> dict:
    """Tessera's MutatingWebhookConfiguration, calling the webhook at ``client_config``."""
    return {"metadata": {"name": "tessera"},
            "webhooks": [{"name": WEBHOOK_NAME, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Fail", "timeoutSeconds": 10, "clientConfig": client_config,
                          "rules": WEBHOOK_RULES}]}


def register_webhook(api_url: str, client_config: dict) -> None:
    """Register Tessera's webhook with the API server at ``api_url`` (as its admin)."""
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api_url))
    kubernetes.client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration(
        webhook_configuration(client_config), _preload_content=False)


@contextmanager
def scheduling(cluster: Cluster, policy: str = "fragmentation", own_process: bool = False,
               report: Callable[[str], None] | None = None) -> Iterator[Scheduling]:
    """Run the extender, register its webhook, and schedule through it; stop on exit. ``own_process``
    runs ``tessera-extender`` as a process of its own (as the demo does), else a daemon in this one;
    its start is waited for while the process lives and progresses (``report`` hears what is awaited)."""
    prepare_keys(cluster)
    pki = cluster.workdir / "webhook-tls"
    ca_bundle = write_webhook_pki(pki, ["localhost"], ["127.0.0.1"])
    tls = {"tls_cert_path": str(pki / "tls.crt"), "tls_key_path": str(pki / "tls.key")}
    kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_EXTENDER)
    log = cluster.workdir / "extender.log" if own_process else None
    if own_process:
        webhook_port = free_port()
        url = f"http://127.0.0.1:{free_port()}"
        extender = spawn_extender(kubeconfig, cluster.workdir, url.removeprefix("http://"),
                                  webhook_listen=f"127.0.0.1:{webhook_port}", extra_args=["--policy", policy],
                                  log_path=str(log), **tls)
    else:
        extender = start_extender(kubeconfig, cluster.workdir, leader_election=True, policy=policy, **tls)
        webhook_port, url = extender.webhook_port, extender.url
    scheduler = None
    try:
        if own_process:
            started = Scheduling(extender, None, url, log)
            wait_ready([started.awaited(lambda: http_ok(f"{url}/healthz"))], "answering /healthz (leader, synced)",
                       report=report)
        register_webhook(cluster.url, {"url": f"https://127.0.0.1:{webhook_port}/mutate", "caBundle": ca_bundle})
        scheduler = SimScheduler(KubeApi(api_client(str(cluster.kubeconfig))), url).start()
        yield Scheduling(extender, scheduler, url, log)
    finally:
        if scheduler is not None:
            scheduler.stop()
        if isinstance(extender, subprocess.Popen):
            stop_process(extender, 10.0)
        else:
            extender.stop()
