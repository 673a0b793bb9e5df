"""Manifests and a raw HTTP helper shared by the API server tests."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from simcluster.apiserver import ApiServer


def pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A minimal valid pod manifest."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec},
    }
    return body


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ready node manifest."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {
                "architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://1.7.0",
                "kernelVersion": "6.1.0", "kubeProxyVersion": "", "kubeletVersion": "v1.32.0",
                "machineID": "m", "operatingSystem": "linux", "osImage": "Ubuntu 22.04", "systemUUID": "u",
            },
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
        },
    }


def http(server: ApiServer, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A raw HTTP request; returns (status code, parsed JSON body)."""
    req = urllib.request.Request(server.url + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def kubectl(server: ApiServer, workdir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Real kubectl, default flags, against ``server`` (its kubeconfig and HTTP cache under ``workdir``)."""
    kubeconfig = workdir / "kubeconfig"
    if not kubeconfig.exists():
        server.write_kubeconfig(kubeconfig)
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(workdir / "cache"), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
