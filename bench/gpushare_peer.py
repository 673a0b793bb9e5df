"""Alibaba's gpushare-scheduler-extender as a peer of Tessera's extender, on the same API server and nodes.

``scripts/build-gpushare.sh`` builds it (pinned in ``tools/gpushare/go.mod``); ``add_gpu_mem`` gives the
bench's light nodes what gpushare reads (``aliyun.com/gpu-mem`` and ``aliyun.com/gpu-count`` in
capacity and allocatable: each node's GPUs and their GiB); ``spawn_gpushare`` runs it against the API
server (``KUBECONFIG``), least logging (``LOG_LEVEL=error``); ``filter_body`` is the bench's
filter request with the pod asking gpushare's resource instead: its MPS memory, or one whole card for
a whole-GPU pod (gpushare shares one GPU per pod).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
FILTER_PATH = "gpushare-scheduler/filter"
GPU_MEM, GPU_COUNT = "aliyun.com/gpu-mem", "aliyun.com/gpu-count"


def build() -> tuple[Path | None, str]:
    """The built binary (building it where needed: minutes the first time), or None and why not."""
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-gpushare.sh")], capture_output=True, text=True)
    if built.returncode != 0:
        lines = [line for line in built.stderr.splitlines() if line.strip()]
        return None, f"build-gpushare.sh exit {built.returncode}: {lines[-1] if lines else 'no message'}"
    return Path(built.stdout.strip()) / "gpushare-sche-extender", ""


def add_gpu_mem(api, names: list[str], gpus: int, gib_per_gpu: int) -> None:
    """Patch each node's status with gpushare's resources."""
    extra = {GPU_MEM: str(gpus * gib_per_gpu), GPU_COUNT: str(gpus)}
    for name in names:
        api.core.patch_node_status(name, {"status": {"capacity": extra, "allocatable": extra}})


def spawn_gpushare(binary: Path, kubeconfig: Path, port: int, log_path: Path,
                   timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """gpushare-scheduler-extender on ``port``, once it answers (its cache is built before it listens)."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PORT": str(port), "LOG_LEVEL": "error"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/version", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise TimeoutError(f"gpushare-scheduler-extender did not answer on {url}; see {log_path}") from None
            time.sleep(0.1)


def filter_body(pod: dict, names_json: bytes, gib_per_gpu: int) -> bytes:
    """The filter request for ``pod`` asking ``aliyun.com/gpu-mem`` (its mps-memory, else a whole card)."""
    container = pod["spec"]["containers"][0]
    limits = dict(container["resources"]["limits"])
    gib = limits.get("nvidia.com/mps-memory", str(gib_per_gpu))
    limits = {k: v for k, v in limits.items() if not k.startswith("nvidia.com/")} | {GPU_MEM: gib}
    asked = {**pod, "spec": {**pod["spec"], "containers": [
        {**container, "resources": {"limits": limits, "requests": dict(limits)}}]}}
    return b'{"Pod":' + orjson.dumps(asked) + b',"Nodes":null,"NodeNames":' + names_json + b"}"
