"""Start one exporter process for one simulated node (``tessera demo``, tests, the benchmark)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

from tessera.daemonproc import free_port, spawn_daemon

__all__ = ["free_port", "start_exporter", "wait_ready"]


def start_exporter(node_description: str, pod_resources_socket: str, state_dir: str, listen: str = "127.0.0.1:0",
                   *, interval_s: float = 1.0, node_name: str | None = None, kubeconfig: str = "",
                   proc_root: str | None = None, overuse_dir: str | None = None, log_path: str | None = None,
                   extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None) -> subprocess.Popen:
    """Start ``tessera-exporter`` on the fake node ``node_description``.

    A ``listen`` ending in ``:0`` gets a free port, chosen here; the chosen address is the
    process's ``listen`` attribute (``proc.listen``). ``node_name`` defaults to the description's
    node name; ``overuse_dir`` to ``<state_dir>/../overuse``; ``extra_args`` are more flags
    (``--no-dcgm-series``). Stop it with ``proc.terminate()``.
    """
    from tessera.fakenvml import load_description

    host, _, port = listen.rpartition(":")
    if port == "0":
        listen = f"{host or '127.0.0.1'}:{free_port(host or '127.0.0.1')}"
    args = ["--listen", listen,
            "--pod-resources-socket", pod_resources_socket, "--state-dir", state_dir,
            "--interval-s", str(interval_s), "--kubeconfig", kubeconfig, "--log-format", "json",
            "--node-name", node_name or load_description(node_description).node,
            "--overuse-dir", overuse_dir or os.path.join(os.path.dirname(os.path.abspath(state_dir)), "overuse")]
    if proc_root:
        args += ["--proc-root", proc_root]
    args += extra_args or []
    proc = spawn_daemon("exporter.main", args, log_path,
                        {"TESSERA_FAKE_NVML": str(node_description), **(extra_env or {})})
    proc.listen = listen  # type: ignore[attr-defined]
    return proc


def wait_ready(proc: subprocess.Popen, timeout_s: float = 20.0) -> str:
    """Wait until the exporter answers ``/healthz`` with 200; returns its base URL."""
    url = f"http://{proc.listen}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tessera-exporter exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return url
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"tessera-exporter at {url} not ready after {timeout_s}s")
