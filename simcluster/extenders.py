"""Run the extender against a running cluster (``simcluster`` or real): in-process with
``start_extender``, or as a ``tessera-extender`` subprocess with ``spawn_extender``. Either makes an
Ed25519 signing key in ``workdir`` when none is given (its public half beside it, ``extender.pub``,
for the device plugins)."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import urllib.request
from pathlib import Path

from tessera.assignment import generate_keypair, load_private_key
from tessera.config import ExtenderConfig
from tessera.daemonproc import free_port, spawn_daemon

__all__ = ["ensure_signing_key", "free_port", "spawn_extender", "start_extender", "wait_healthy"]


def ensure_signing_key(workdir: str | Path) -> tuple[Path, Path]:
    """(private, public) key paths in ``workdir``, created when missing."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    private, public = workdir / "extender.key", workdir / "extender.pub"
    if not private.exists():
        generate_keypair(str(private), str(public))
    return private, public


def start_extender(kubeconfig: str | Path, workdir: str | Path, *, listen: str = "127.0.0.1:0",
                   webhook_listen: str = "127.0.0.1:0", tls_cert_path: str = "", tls_key_path: str = "",
                   leader_election: bool = True, identity: str = "", lease_duration_s: float = 15.0,
                   lease_retry_s: float = 2.0, wait: bool = True, **settings):
    """An ``ExtenderDaemon`` in this process, started (and synced with the cluster when ``wait``).
    ``settings`` are further ``ExtenderConfig`` keys. Stop it with ``.stop()``."""
    from extender.daemon import ExtenderDaemon
    from extender.kubeapi import KubeApi, api_client

    private, _ = ensure_signing_key(workdir)
    config = dataclasses.replace(ExtenderConfig(), listen=listen, webhook_listen=webhook_listen,
                                 tls_cert_path=tls_cert_path, tls_key_path=tls_key_path, kubeconfig=str(kubeconfig),
                                 signing_key_path=str(private), leader_election=leader_election, **settings)
    api = KubeApi(api_client(str(kubeconfig)))
    daemon = ExtenderDaemon(config, api, load_private_key(str(private)), identity=identity,
                            lease_duration_s=lease_duration_s, lease_retry_s=lease_retry_s).start()
    if wait and not daemon.wait_synced(30):
        daemon.stop()
        raise TimeoutError("tessera-extender did not list nodes and pods within 30 s")
    return daemon


def spawn_extender(kubeconfig: str | Path, workdir: str | Path, listen: str, *, webhook_listen: str = "",
                   tls_cert_path: str = "", tls_key_path: str = "", extra_args: list[str] | None = None,
                   log_path: str | None = None) -> subprocess.Popen:
    """``tessera-extender`` as a subprocess (``listen`` must name a port). Stop it with ``terminate()``."""
    private, _ = ensure_signing_key(workdir)
    args = ["--listen", listen, "--kubeconfig", str(kubeconfig),
            "--signing-key-path", str(private), "--log-format", "json",
            "--webhook-listen", webhook_listen or "127.0.0.1:0", "--tls-cert-path", tls_cert_path,
            "--tls-key-path", tls_key_path, *(extra_args or [])]
    proc = spawn_daemon("extender.main", args, log_path)
    proc.listen = listen  # type: ignore[attr-defined]
    return proc


def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    """Wait until ``url``/healthz answers 200 (the leader, synced)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s")
        time.sleep(0.1)
