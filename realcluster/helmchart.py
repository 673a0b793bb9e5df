"""Helm and the chart deploy/chart/tessera, as the tests run them: the helm that scripts/build-helm.sh
built (``TESSERA_HELM_BIN``, else the script's cache for this checkout's pin), run with its own
config and cache folders, and the per-cluster key files deploy/make-keys.sh wrote passed as values.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "deploy" / "chart" / "tessera"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-helm.sh"
HOW_TO_GET = "run `bash scripts/build-helm.sh` (needs Go; a cold build took 9 min on 2 busy cores) or set TESSERA_HELM_BIN"
# Each --set-file value of the chart and the file make-keys.sh writes it to, under its keys folder.
KEY_FILES = {
    "keys.extenderKey": "extender.key",
    "keys.extenderPub": "extender.pub",
    "keys.webhook.tlsCrt": "webhook/tls.crt",
    "keys.webhook.tlsKey": "webhook/tls.key",
    "keys.webhook.caCrt": "webhook/ca.crt",
    "keys.webhook.clientCrt": "webhook/client.crt",
    "keys.webhook.clientKey": "webhook/client.key",
}
# Labels Helm charts put on every object; deploy/ has none of them.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")


def find_helm() -> str | None:
    """The helm program: ``TESSERA_HELM_BIN`` (a folder or the program), else the one build-helm.sh built."""
    value = os.environ.get("TESSERA_HELM_BIN")
    if value:
        path = Path(value) / "helm" if Path(value).is_dir() else Path(value)
        return str(path) if os.access(path, os.X_OK) else None
    try:
        done = subprocess.run(["bash", str(BUILD_SCRIPT), "--find"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(done.stdout.strip()) / "helm"
    return str(path) if done.returncode == 0 and os.access(path, os.X_OK) else None


def key_args(keys_dir: Path, webhook: bool = True) -> list[str]:
    """``--set-file`` arguments giving the chart the key files in ``keys_dir`` (make-keys.sh's output); the
    extender's signing pair alone without ``webhook`` (cert-manager makes the certificates)."""
    args = []
    for value, relative in KEY_FILES.items():
        if webhook or not value.startswith("keys.webhook."):
            args += ["--set-file", f"{value}={keys_dir / relative}"]
    return args


def run_helm(helm: str, args: list[str], home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``helm args`` with its config, cache and data folders under ``home`` (nothing written to ``~``)."""
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=timeout, env=env)


def without_helm_labels(obj: dict) -> dict:
    """``obj`` less the labels Helm adds (an emptied ``labels`` is dropped)."""
    labels = obj.get("metadata", {}).get("labels")
    if labels is not None:
        for label in HELM_LABELS:
            labels.pop(label, None)
        if not labels:
            del obj["metadata"]["labels"]
    return obj
