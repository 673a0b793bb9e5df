"""Tessera installed into the real control plane as deploy/ installs it.

deploy/ is rendered as an admin renders it (a copy, its keys made by deploy/make-keys.sh, ``kubectl
kustomize``) and every object but the workloads is applied server-side: the namespace, the
ServiceAccounts, RBAC, the scheduler's ConfigMap, the Secrets, the MutatingWebhookConfiguration (its
``clientConfig`` pointed at the test's port: nothing routes a Service here), the NetworkPolicy and
PodDisruptionBudget. The workloads' pods need images this machine cannot run, so their programs run
as processes instead, each with the arguments deploy/ gives its container (ports and file paths
rewritten to the test's) and a token of the ServiceAccount deploy/ gives it: the real authorizer
decides what each may do.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from realcluster.components import Component, await_ready, https_ok
from realcluster.pki import CertificateAuthority
from simcluster.extenders import ensure_signing_key
from simcluster.readiness import http_ok
from tessera import NAMESPACE
from tessera.daemonproc import REPO_ROOT, free_port

DEPLOY = REPO_ROOT / "deploy"
WORKLOAD_KINDS = ("Deployment", "DaemonSet")   # rendered, schema-checked (dry run), not run as pods
EXTENDER_SERVICE_ACCOUNT = "tessera-extender"
SCHEDULER_SERVICE_ACCOUNT = "tessera-scheduler"
SCHEDULER_NAME = "tessera-scheduler"


def render_deploy(workdir: Path, kubectl: str, overlay: str = ".") -> list[dict]:
    """deploy/ as an admin renders it: a copy with its keys (make-keys.sh), through ``kubectl kustomize``."""
    copy_dir = workdir / "deploy"
    if not copy_dir.exists():
        shutil.copytree(DEPLOY, copy_dir, ignore=shutil.ignore_patterns("*.key", "*.pub", "*.crt", "ca.b64"))
        env = {**os.environ, "PYTHON": sys.executable,
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        done = subprocess.run(["sh", str(copy_dir / "make-keys.sh")], env=env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/make-keys.sh failed: {done.stderr.strip()}")
    done = subprocess.run([kubectl, "kustomize", str(copy_dir / overlay)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    """The one object of ``kind`` named ``name`` (a generated name: ``name-<hash>``)."""
    hits = [o for o in objects if o["kind"] == kind and
            (o["metadata"]["name"] == name or o["metadata"]["name"].rsplit("-", 1)[0] == name)]
    if len(hits) != 1:
        raise LookupError(f"deploy/ renders {len(hits)} {kind} named {name}")
    return hits[0]


def container_args(objects: list[dict], workload: str, container: str) -> list[str]:
    """The args deploy/ gives one container (or init container) of one workload."""
    for kind in WORKLOAD_KINDS:
        try:
            spec = find(objects, kind, workload)["spec"]["template"]["spec"]
        except LookupError:
            continue
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            if c["name"] == container:
                return list(c.get("args", []))
    raise LookupError(f"deploy/ has no container {container} in {workload}")


def rewrite_flags(args: list[str], replacements: dict[str, str]) -> list[str]:
    """``args`` with the value of each ``--flag=value`` named in ``replacements`` replaced; flags named
    there but absent are appended. A flag given without a value keeps its place."""
    out, seen = [], set()
    for arg in args:
        flag, eq, _ = arg.partition("=")
        if eq and flag in replacements:
            out.append(f"{flag}={replacements[flag]}")
            seen.add(flag)
        else:
            out.append(arg)
    out.extend(f"{flag}={value}" for flag, value in replacements.items() if flag not in seen)
    return out


@dataclass
class Tessera:
    """Tessera's control-plane side, running against the real API server."""

    extender: Component
    scheduler: Component
    verbs_url: str
    webhook_url: str
    metrics_url: str
    webhook_ca: CertificateAuthority
    signing_public_key: Path
    objects: list[dict]


def webhook_configuration(objects: list[dict], url: str, ca_pem: bytes) -> dict:
    """deploy/'s MutatingWebhookConfiguration with each webhook's clientConfig pointed at ``url``."""
    config = copy.deepcopy(find(objects, "MutatingWebhookConfiguration", "tessera"))
    for hook in config["webhooks"]:
        path = hook["clientConfig"].get("service", {}).get("path", "/mutate")
        hook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca_pem).decode()}
    return config


def scheduler_configuration(objects: list[dict], verbs_url: str, tls: dict[str, str], kubeconfig: Path) -> dict:
    """deploy/'s KubeSchedulerConfiguration (from its ConfigMap) with the extender at ``verbs_url``,
    the client certificate files ``tls`` (certFile, keyFile, caFile) and the scheduler's kubeconfig."""
    text = find(objects, "ConfigMap", "tessera-scheduler-config")["data"]["scheduler-config.yaml"]
    config = yaml.safe_load(text)
    for extender in config["extenders"]:
        extender["urlPrefix"] = verbs_url
        extender["tlsConfig"] = dict(tls)
    config["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    return config


@dataclass
class ExtenderReplica:
    """One running tessera-extender process and its ports."""

    component: Component
    verbs_url: str
    webhook_url: str
    metrics_url: str

    def healthy(self) -> bool:
        """/healthz answers 200: this replica leads the Lease and has synced."""
        return http_ok(f"{self.metrics_url}/healthz")


def start_extender_replica(cluster, objects: list[dict], webhook_ca: CertificateAuthority, name: str,
                           logs: Path, *, lease_duration_s: float | None = None,
                           extra_args: Sequence[str] = ()) -> ExtenderReplica:
    """A tessera-extender process with the arguments deploy/ gives its container (ports and files
    rewritten to the test's), then ``extra_args``, and a token of deploy/'s ServiceAccount; not awaited."""
    serving = webhook_ca.issue("extender", "tessera-extender", client=False, server=True,
                               dns_names=(f"tessera-extender.{NAMESPACE}.svc", "localhost"), ips=("127.0.0.1",))
    private, public = ensure_signing_key(cluster.workdir)
    verbs, webhook, metrics = free_port(), free_port(), free_port()
    replacements = {
        "--listen": f"127.0.0.1:{verbs}", "--webhook-listen": f"127.0.0.1:{webhook}",
        "--metrics-listen": f"127.0.0.1:{metrics}", "--client-ca-path": str(webhook_ca.cert),
        "--tls-cert-path": str(serving.cert), "--tls-key-path": str(serving.key),
        "--signing-key-path": str(private), "--trusted-keys-path": str(public),
        "--kubeconfig": str(cluster.service_account_kubeconfig(NAMESPACE, EXTENDER_SERVICE_ACCOUNT))}
    if lease_duration_s is not None:
        replacements["--lease-duration-s"] = str(lease_duration_s)
    args = [*rewrite_flags(container_args(objects, "tessera-extender", "extender"), replacements), *extra_args]
    env_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    component = Component(name, ["env", f"PYTHONPATH={env_path}", sys.executable, "-m", "extender.main", *args],
                          logs / f"{name}.log").start()
    cluster.components.append(component)
    return ExtenderReplica(component, f"https://127.0.0.1:{verbs}", f"https://127.0.0.1:{webhook}",
                           f"http://127.0.0.1:{metrics}")


def start_tessera(cluster, logs: Path, extender_flags: Sequence[str] = ()) -> Tessera:
    """Apply deploy/'s objects, then start the extender and the second kube-scheduler as deploy/ runs them."""
    objects = render_deploy(cluster.workdir, cluster.binaries["kubectl"])
    webhook_ca = CertificateAuthority(cluster.workdir / "pki" / "webhook", name="tessera-webhook-ca")
    scheduler_client = webhook_ca.issue("scheduler-client", "tessera-scheduler")
    applied = [o for o in objects if o["kind"] not in WORKLOAD_KINDS and o["kind"] != "MutatingWebhookConfiguration"]
    cluster.apply([o for o in applied if o["kind"] == "Namespace"])
    cluster.apply([o for o in applied if o["kind"] != "Namespace"])

    replica = start_extender_replica(cluster, objects, webhook_ca, "tessera-extender", logs, extra_args=extender_flags)
    await_ready(replica.component, replica.healthy, "tessera-extender leading and synced (/healthz)")
    cluster.apply([webhook_configuration(objects, replica.webhook_url, webhook_ca.pem)])

    tls = {"certFile": str(scheduler_client.cert), "keyFile": str(scheduler_client.key), "caFile": str(webhook_ca.cert)}
    config_path = cluster.workdir / "tessera-scheduler-config.yaml"
    config_path.write_text(yaml.safe_dump(scheduler_configuration(
        objects, replica.verbs_url, tls, cluster.service_account_kubeconfig(NAMESPACE, SCHEDULER_SERVICE_ACCOUNT))))
    port = free_port()
    scheduler = Component("tessera-scheduler", [
        cluster.binaries["kube-scheduler"], f"--config={config_path}", "--bind-address=127.0.0.1",
        f"--secure-port={port}", "--v=2"], logs / "tessera-scheduler.log").start()
    cluster.components.append(scheduler)
    await_ready(scheduler, lambda: https_ok(f"https://127.0.0.1:{port}/healthz", None),
                "the tessera-scheduler kube-scheduler answering /healthz")
    _, public = ensure_signing_key(cluster.workdir)
    return Tessera(replica.component, scheduler, replica.verbs_url, replica.webhook_url, replica.metrics_url,
                   webhook_ca, public, objects)

