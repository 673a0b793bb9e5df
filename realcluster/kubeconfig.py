"""Kubeconfig files for the real control plane's clients: one per identity, by client certificate
or by bearer token (a ServiceAccount's, from the TokenRequest API)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(path: str | Path, server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
                     token: str = "", name: str = "realcluster") -> Path:
    """A kubeconfig for ``server`` that trusts ``ca`` and authenticates with ``cert``/``key`` or ``token``."""
    user: dict[str, str] = {}
    if cert and key:
        user = {"client-certificate": str(cert), "client-key": str(key)}
    if token:
        user["token"] = token
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": name,
           "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
           "users": [{"name": name, "user": user}],
           "contexts": [{"name": name, "context": {"cluster": name, "user": name}}]}
    path = Path(path)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path
