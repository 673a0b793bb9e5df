"""HAMi's scheduler extender (Project-HAMi/HAMi, ``cmd/scheduler``) as a peer of Tessera's extender, on the
same API server and nodes.

``scripts/build-hami.sh`` builds it (pinned in ``tools/hami/go.mod``). ``register_nodes`` gives the
bench's light nodes what HAMi's device plugin would have written and what its scheduler reads: each
GPU in the ``hami.io/node-nvidia-register`` annotation (JSON: id, index, split count, MiB, cores,
type, health, ``hami-core`` mode), the handshake annotations (``HANDSHAKES``) in the state the
scheduler itself leaves them after its first pass (``Requesting_<time>``: it then writes nothing to the
nodes), and ``nvidia.com/gpu`` in allocatable (GPUs x split count, as the device plugin advertises; the
scheduler drops a node whose count is 0 once the handshake is a minute old).

``spawn_hami`` runs it against the API server (``KUBECONFIG``): HTTP on a free port, its device config
(``--device-config-file``: only the ``nvidia`` section, HAMi's default resource names), and turned off
or moved out of the way what answering filter does not need: leader election stays off (its default;
then it is always the leader and reads no Leases), no TLS, no pprof, its Prometheus endpoint on a free
loopback port (it is never scraped), and least logging (klog's info lines to /dev/null, errors to the
log file). Its ``/webhook`` route is served but never called (no admission webhook is registered). Its
client-go rate limit is raised (``KUBE_QPS``), so that its one PATCH per filter does not wait for it.

HAMi's filter is its whole decision: it scores every node, picks one, writes the pick and the devices
on the pod (one PATCH to the API server per filter) and answers that one node; it has no prioritize.
``filter_body`` is the bench's filter request with the pod asking HAMi's resources instead:
``nvidia.com/gpu`` (cards), ``nvidia.com/gpumem`` (MiB) and ``nvidia.com/gpucores`` (percent of a card).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

import extender_bench  # bench/, on the path where this is imported from
from simcluster.extenders import free_port
from simcluster.processes import stop_process

REPO = Path(__file__).resolve().parents[1]
FILTER_PATH = "filter"
GPU, GPU_MEM, GPU_CORES = "nvidia.com/gpu", "nvidia.com/gpumem", "nvidia.com/gpucores"
REGISTER = "hami.io/node-nvidia-register"
# The handshake annotations of the vendors HAMi's scheduler handshakes with (NVIDIA's, and Biren's, Hygon's,
# Vastai's and Kunlun's vXPU, whose devices it always initialises, configured or not): where one is missing,
# its first pass over the nodes GETs and PATCHes the node for it, at client-go's default rate limit (5 per
# second: about 1.5 s a node, hours at 5,000 nodes, before its filter answers at all).
HANDSHAKES = ("hami.io/node-handshake", "hami.io/node-handshake-biren", "hami.io/node-handshake-dcu",
              "hami.io/node-handshake-va", "hami.io/node-handshake-xpu")
SPLIT_COUNT = 10  # HAMi's default deviceSplitCount: tasks one card holds
DEVICE_CONFIG = f"""nvidia:
  resourceCountName: "{GPU}"
  resourceMemoryName: "{GPU_MEM}"
  resourceMemoryPercentageName: "nvidia.com/gpumem-percentage"
  resourceCoreName: "{GPU_CORES}"
  resourcePriorityName: "nvidia.com/priority"
  overwriteEnv: false
  defaultMemory: 0
  defaultCores: 0
  defaultGPUNum: 1
  deviceSplitCount: {SPLIT_COUNT}
  deviceMemoryScaling: 1
  deviceCoreScaling: 1
"""
# Its client-go rate limit, raised from its default 5 per second (burst 10): its filter PATCHes the pod,
# and the bench's cycles come faster than 5 a second, so by default most filters waited for the limiter
# (p50 274 ms at 1,000 nodes against 428 at 5,000, 2026-12-08), which measures the limiter, not HAMi.
KUBE_QPS = 1000
TURNED_OFF = ("leader election (off by default: always leader, no Lease reads), TLS, pprof, its admission "
              "webhook (served, never called), klog info lines (to /dev/null); metrics on a free loopback "
              f"port, never scraped; client-go's rate limit raised from 5/s to {KUBE_QPS}/s")


def build() -> tuple[Path | None, str]:
    """The built binary (building it where needed: minutes the first time), or None and why not."""
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-hami.sh")], capture_output=True, text=True)
    if built.returncode != 0:
        lines = [line for line in built.stderr.splitlines() if line.strip()]
        return None, f"build-hami.sh exit {built.returncode}: {lines[-1] if lines else 'no message'}"
    return Path(built.stdout.strip()) / "hami-scheduler", ""


def find() -> Path | None:
    """The binary where scripts/build-hami.sh has built it; builds nothing."""
    found = subprocess.run(["bash", str(REPO / "scripts" / "build-hami.sh"), "--find"], capture_output=True,
                           text=True)
    return Path(found.stdout.strip()) / "hami-scheduler" if found.returncode == 0 else None


def register_annotation(node: str, gpus: int, gib_per_gpu: int, model: str) -> str:
    """What HAMi's device plugin writes in ``hami.io/node-nvidia-register`` for ``gpus`` alike cards."""
    return json.dumps([{"id": f"GPU-{node}-{i}", "index": i, "count": SPLIT_COUNT, "devmem": gib_per_gpu * 1024,
                        "devcore": 100, "type": f"NVIDIA-{model}", "numa": 0, "mode": "hami-core", "health": True}
                       for i in range(gpus)], separators=(",", ":"))


def register_nodes(api, names: list[str], gpus: int, gib_per_gpu: int, model: str) -> None:
    """Patch each node with what HAMi's scheduler reads of it (see the module's docstring)."""
    handshake = "Requesting_" + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    count = {GPU: str(gpus * SPLIT_COUNT)}
    for name in names:
        api.core.patch_node_status(name, {"status": {"capacity": count, "allocatable": count}})
        api.core.patch_node(name, {"metadata": {"annotations": {
            REGISTER: register_annotation(name, gpus, gib_per_gpu, model), **dict.fromkeys(HANDSHAKES, handshake)}}})


def spawn_hami(binary: Path, kubeconfig: Path, port: int, metrics_port: int, workdir: Path,
               timeout_s: float = 180.0) -> tuple[subprocess.Popen, str]:
    """HAMi's scheduler on ``port``, once its filter answers (it waits for its first pass over the nodes)."""
    config = workdir / "hami-device-config.yaml"
    config.write_text(DEVICE_CONFIG)
    log_path = workdir / "hami.log"
    argv = [str(binary), f"--http_bind=127.0.0.1:{port}", f"--metrics-bind-address=127.0.0.1:{metrics_port}",
            f"--device-config-file={config}", "--leader-elect=false", f"--kube-qps={KUBE_QPS}",
            f"--kube-burst={KUBE_QPS}", "--v=0", "--logtostderr=false",
            "--log_file=/dev/null", "--stderrthreshold=ERROR"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    # A pod asking nothing: HAMi answers it once its node cache is synced, without writing anything.
    probe = b'{"Pod":{"metadata":{"name":"tessera-probe","namespace":"default"}},"NodeNames":[]}'
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            request = urllib.request.Request(f"{url}/{FILTER_PATH}", probe, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                resp.read()
                return proc, url
        except (OSError, urllib.error.URLError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise TimeoutError(f"HAMi's scheduler did not answer filter on {url}; see {log_path}") from None
            time.sleep(0.2)


def hami_limits(limits: dict[str, str]) -> dict[str, str]:
    """The bench pod's limits asking HAMi's resources: an MPS share (``nvidia.com/mps-core`` percent and
    ``nvidia.com/mps-memory`` GiB) as one card's cores and MiB; whole GPUs (mps-core a multiple of 100,
    no memory) as that many cards, each all its cores and memory."""
    core = int(limits.get("nvidia.com/mps-core", "100"))
    rest = {k: v for k, v in limits.items() if not k.startswith("nvidia.com/")}
    if "nvidia.com/mps-memory" in limits:
        return rest | {GPU: "1", GPU_MEM: str(int(limits["nvidia.com/mps-memory"]) * 1024), GPU_CORES: str(core)}
    return rest | {GPU: str(max(1, core // 100)), GPU_CORES: "100"}


def filter_body(pod: dict, names_json: bytes) -> bytes:
    """The filter request for ``pod`` (the same pod, in the API server) asking HAMi's resources."""
    container = pod["spec"]["containers"][0]
    limits = hami_limits(container["resources"]["limits"])
    asked = {**pod, "spec": {**pod["spec"], "containers": [
        {**container, "resources": {"limits": limits, "requests": dict(limits)}}]}}
    return b'{"Pod":' + orjson.dumps(asked) + b',"Nodes":null,"NodeNames":' + names_json + b"}"


class HamiPeer:
    """HAMi's scheduler beside one latency run: ``prepare`` registers the nodes and starts it before
    Tessera's extender starts; ``call`` sends it each cycle's pod (its round trips, answer bytes and
    answers kept in ``client`` and ``answers``); ``close`` stops it."""

    def __init__(self, binary: Path, workdir: Path, gpus: int, gib_per_gpu: int, model: str) -> None:
        self.binary, self.workdir = binary, workdir
        self.gpus, self.gib_per_gpu, self.model = gpus, gib_per_gpu, model
        self.client: extender_bench.VerbClient | None = None
        self.proc: subprocess.Popen | None = None
        self.answers: list[dict] = []

    def prepare(self, bench, names: list[str]) -> None:
        """The nodes get what HAMi reads; HAMi starts on them and answers once it has read them."""
        register_nodes(bench.api, names, self.gpus, self.gib_per_gpu, self.model)
        self.proc, url = spawn_hami(self.binary, bench.kubeconfig, free_port(), free_port(), self.workdir)
        self.client = extender_bench.VerbClient(url)

    def call(self, pod: dict, names_json: bytes) -> None:
        """HAMi's filter for ``pod`` on the same nodes."""
        if self.client is not None:
            self.answers.append(self.client.call(FILTER_PATH, filter_body(pod, names_json)))

    def close(self) -> None:
        """Stop the client and the process."""
        if self.client is not None:
            self.client.close()
        if self.proc is not None:
            stop_process(self.proc, 5.0)


def rows(row, size: int, tessera: dict[str, list[float]], hami_ms: list[float]) -> list:
    """compare.py's rows (``row`` is its Row) for one size: Tessera's filter against HAMi's, and Tessera's
    filter+prioritize (its whole decision) against HAMi's filter (HAMi's whole decision). No goal."""
    out = [row(f"extender filter, {size:,} nodes", tessera["filter"], "HAMi filter", hami_ms)]
    if len(tessera["filter"]) == len(tessera["prioritize"]) == len(hami_ms):
        out.append(row(f"extender filter+prioritize, {size:,} nodes",
                       [f + p for f, p in zip(tessera["filter"], tessera["prioritize"])], "HAMi filter", hami_ms))
    return out
