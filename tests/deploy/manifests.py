"""deploy/ as an admin renders it: copy the folder, make the keys with deploy/make-keys.sh, run
``kubectl kustomize``, and read the objects; small lookups over the rendered objects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = {"default": ".", "production": "overlays/production"}


def kubectl() -> str | None:
    """The kubectl on PATH (with kustomize built in), or None."""
    return shutil.which("kubectl")


def make_keys_env() -> dict[str, str]:
    """The environment make-keys.sh runs in: this Python, with the repository importable."""
    return {**os.environ, "PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def prepare(workdir: Path) -> Path:
    """A copy of deploy/ with its keys made by make-keys.sh, as an admin's checkout would have them."""
    copy = workdir / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("*.key", "*.pub", "*.crt", "ca.b64"))
    done = subprocess.run(["sh", str(copy / "make-keys.sh")], env=make_keys_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return copy


def render(deploy_copy: Path, overlay: str = ".") -> list[dict]:
    """``kubectl kustomize`` of one overlay of the copy: its objects."""
    done = subprocess.run([kubectl() or "kubectl", "kustomize", str(deploy_copy / overlay)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    """The one object of ``kind`` whose name is ``name`` (generated names: ``name-<hash>``)."""
    hits = [o for o in objects if o["kind"] == kind and
            (o["metadata"]["name"] == name or o["metadata"]["name"].rsplit("-", 1)[0] == name)]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]


def pod_templates(objects: list[dict]) -> dict[str, dict]:
    """Every Deployment's and DaemonSet's pod spec, by workload name."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects
            if o["kind"] in ("Deployment", "DaemonSet")}


def containers(objects: list[dict]) -> list[tuple[str, dict]]:
    """(workload name, container) for every container and init container."""
    return [(name, c) for name, spec in pod_templates(objects).items()
            for c in spec.get("initContainers", []) + spec["containers"]]


def scheduler_configuration(objects: list[dict]) -> dict:
    """The KubeSchedulerConfiguration the second kube-scheduler reads (from its ConfigMap)."""
    config_map = find(objects, "ConfigMap", "tessera-scheduler-config")
    return yaml.safe_load(config_map["data"]["scheduler-config.yaml"])


def flag(args: list[str], name: str) -> str:
    """The value of ``--name=value`` in ``args``."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]
