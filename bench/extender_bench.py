"""The extender over HTTP against the embedded API server (light nodes of 8 A100-40GB GPUs in mps mode).

    .venv/bin/python bench/extender_bench.py [--sizes 1000,5000] [--pods 300] [--bind-nodes 1000 --bind-pods 1000]
                                             [--in-process-apiserver]

As in a cluster, the API server (``simcluster.apiserver.serve``), the extender and this client (in the
role of kube-scheduler) are three processes; ``--in-process-apiserver`` runs the API server in this one
instead, whose threads and garbage collection then count in the client's timings.

1. Latency: for each size, ``pods`` scheduling cycles as kube-scheduler runs them: POST /filter with
   the pod and every node name (``nodeCacheCapable``), POST /prioritize with the nodes that passed
   (timed together: p50, p99, max), then POST /bind to a top node (timed apart). Pods follow the
   placement bench's mix of MPS shares and whole GPUs; fragmentation policy (the Fleet path). The
   round trip includes this client's JSON decode of the answers (Python's; kube-scheduler's is Go);
   the extender's own time per verb comes from each answer's ``Server-Timing`` header.
2. Throughput: ``bind-pods`` pending pods scheduled end to end by ``simcluster.simscheduler`` (watch,
   filter, prioritize, bind: one Binding POST carrying the signed assignment): pods bound per second.
   A separate process stands in for the device plugins and writes the ``tessera.io/allocated`` mark on
   each pod bound (there is no kubelet behind a light node), so the per-shape rule holds a node only
   for that moment.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing
import random
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deviceplugin.apiclient import NodeApi  # noqa: E402
from extender.kubeapi import KubeApi, api_client  # noqa: E402
from simcluster.extenders import free_port, spawn_extender, wait_healthy  # noqa: E402
from simcluster.simscheduler import SimScheduler  # noqa: E402
from simcluster.apiserver import ApiServer  # noqa: E402
from simcluster.apiserver.serve import light_cluster, spawn  # noqa: E402
from simcluster.lightnodes import add_light_nodes  # noqa: E402
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

# (weight, mps-core (negative: that many whole GPUs), cpu millicores), as in placement_bench.
MIX = [(30, 25, 4000), (20, 50, 8000), (10, 10, 2000), (15, 100, 12000), (10, 75, 8000), (8, 30, 4000),
       (4, -2, 24000), (2, -4, 48000), (1, -8, 96000)]


def make_pod(name: str, rng: random.Random) -> dict:
    _, core, cpu = rng.choices(MIX, [w for w, _, _ in MIX])[0]
    limits = {"nvidia.com/mps-core": str(-100 * core if core < 0 else core), "cpu": f"{cpu}m",
              "memory": f"{cpu // 1000 * 4}Gi"}
    if core > 0:
        limits["nvidia.com/mps-memory"] = str(max(1, core * 40 // 100))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedulerName": "tessera-scheduler", "containers": [
                {"name": "main", "image": "cuda", "resources": {"limits": limits, "requests": dict(limits)}}]}}


class BenchCluster:
    """The API server with ``size`` light nodes (its own process unless ``in_process``) and a client of it."""

    def __init__(self, size: int, workdir: Path, in_process: bool) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self.proc = self.srv = None
        if in_process:
            self.srv = ApiServer(history_size=200_000).start()
            add_light_nodes(self.srv.registry, light_cluster(size, "A100-SXM4-40GB", 8, "mps", 96, 768))
            self.srv.write_kubeconfig(self.kubeconfig)
        else:
            self.proc, _ = spawn(["--light-nodes", str(size), "--model", "A100-SXM4-40GB", "--gpus", "8",
                                  "--mode", "mps", "--cpu", "96", "--memory-gib", "768",
                                  "--kubeconfig", str(self.kubeconfig)])
        self.api = KubeApi(api_client(str(self.kubeconfig)))
        self.plugin_api = NodeApi(api_client(str(self.kubeconfig)), "")  # the device plugin's own client

    def create_pod(self, pod: dict) -> dict:
        """POST the pod; the pod as created (uid, resourceVersion)."""
        return json.loads(self.api.core.create_namespaced_pod("default", pod, _preload_content=False).data)

    def mark_allocated(self, pod: dict) -> None:
        """What the device plugin writes once the kubelet allocated the pod's devices."""
        self.plugin_api.patch_pod_annotations("default", pod["metadata"]["name"], {ANNOTATION_ALLOCATED: "main"})

    def stop(self) -> None:
        self.api.close()
        self.plugin_api.close()
        if self.srv is not None:
            self.srv.stop()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def extender(kubeconfig: Path, workdir: Path):
    """tessera-extender in its own process (as deployed), ready; and its URL."""
    listen = f"127.0.0.1:{free_port()}"
    proc = spawn_extender(kubeconfig, workdir, listen, extra_args=["--no-leader-election"])
    wait_healthy(f"http://{listen}", 120)
    return proc, f"http://{listen}"


def server_ms(resp: http.client.HTTPResponse) -> float:
    """The extender's own time for this answer, from its ``Server-Timing: handler;dur=<ms>`` header."""
    return float(resp.getheader("Server-Timing", "dur=nan").rpartition("dur=")[2])


class VerbClient:
    """One kept-alive HTTP connection to an extender (kube-scheduler's role). Per verb it keeps each
    call's round trip (request sent to answer read, ms), the extender's own ms (Server-Timing) and the
    answer's bytes; ``decode_s`` adds up the client's JSON decode seconds."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port))
        self.round_trip: dict[str, list[float]] = defaultdict(list)
        self.served: dict[str, list[float]] = defaultdict(list)
        self.answer_bytes: dict[str, list[int]] = defaultdict(list)
        self.decode_s = 0.0

    def call(self, verb: str, body: bytes, headers: dict[str, str] | None = None):
        """POST ``body`` to ``/verb`` (with ``headers``); the answer's JSON value."""
        t = time.perf_counter()
        self.conn.request("POST", f"/{verb}", body, {"Content-Type": "application/json", **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        t1 = time.perf_counter()
        self.round_trip[verb].append((t1 - t) * 1000)
        self.served[verb].append(server_ms(resp))
        self.answer_bytes[verb].append(len(data))
        value = orjson.loads(data)
        self.decode_s += time.perf_counter() - t1
        return value

    def close(self) -> None:
        self.conn.close()


@dataclass
class LatencyRun:
    """What one latency run measured (ms): whole cycles (filter + prioritize), the warm ones, binds,
    the client's JSON per cycle; and the extender's calls."""

    size: int
    pods: int
    cycle: list[float]
    warm: list[float]
    binds: list[float]
    client_json: list[float]
    tessera: VerbClient


# Called after each cycle, outside its timing, with (the pod, the node names' JSON, the filter body, the
# prioritize body (b"" when none was sent), the filter's answer): other extenders get the same requests.
Beside = Callable[[dict, bytes, bytes, bytes, dict], None]


def measure_latency(size: int, pods: int, workdir: Path, in_process: bool, beside: Beside | None = None,
                    prepare: Callable[[BenchCluster, list[str]], None] | None = None) -> LatencyRun:
    """``pods`` scheduling cycles against tessera-extender on ``size`` light nodes; ``beside`` gets each
    cycle's requests after it (see ``Beside``), so others are measured on the same requests in the same
    minutes. ``prepare`` runs on the cluster and its node names before the extender starts."""
    bench = BenchCluster(size, workdir, in_process)
    names = [f"node-{i:05d}" for i in range(size)]
    if prepare is not None:
        try:
            prepare(bench, names)
        except BaseException:
            bench.stop()  # the API server is a process of its own: not left behind when a peer fails to start
            raise
    proc, url = extender(bench.kubeconfig, workdir)
    client = VerbClient(url)

    # As simcluster.simscheduler (and kube-scheduler, in Go) does: the node names encoded once per list,
    # the pod once per cycle; orjson, the nearest Python gets to Go's decoder.
    names_json = orjson.dumps(names)
    rng = random.Random(7)
    cycle, binds, warm, client_json = [], [], [], []
    seen: set[str] = set()
    gc.collect()
    gc.freeze()  # setup's objects (node names, clients) are not walked by every collection in the loop
    try:
        for k in range(pods):
            pod = bench.create_pod(make_pod(f"lat-{k}", rng))
            t0 = time.perf_counter()
            head = b'{"Pod":' + orjson.dumps(pod) + b',"Nodes":null,"NodeNames":'
            coded = time.perf_counter() - t0
            client.decode_s = 0.0
            filter_body = head + names_json + b"}"
            result = client.call("filter", filter_body)
            fits = result["NodeNames"] or []
            prioritize_body = b""
            if fits:
                t = time.perf_counter()
                prioritize_body = head + (names_json if fits == names else orjson.dumps(fits)) + b"}"
                coded += time.perf_counter() - t
            scores = client.call("prioritize", prioritize_body) if fits else []
            took = (time.perf_counter() - t0) * 1000
            cycle.append(took)
            client_json.append((coded + client.decode_s) * 1000)
            shape = json.dumps(pod["spec"]["containers"][0]["resources"]["limits"], sort_keys=True)
            # Warm: a shape seen before, and not a cycle right after the learned model was rebuilt
            # (every shape_window/10 binds), when every node is scored again.
            if shape in seen and k % 100 > 9:
                warm.append(took)
            seen.add(shape)
            if scores:
                best = max(scores, key=lambda s: s["Score"])["Host"]
                t1 = time.perf_counter()
                bind = {"PodName": pod["metadata"]["name"], "PodNamespace": "default", "PodUID": pod["metadata"]["uid"],
                        "Node": best}
                err = client.call("bind", json.dumps(bind).encode())["Error"]
                binds.append((time.perf_counter() - t1) * 1000)
                if not err:
                    bench.mark_allocated(pod)
            if beside is not None:
                beside(pod, names_json, filter_body, prioritize_body, result)
    finally:
        gc.unfreeze()
        client.close()
        proc.terminate()
        proc.wait(10)
        bench.stop()
    return LatencyRun(size, pods, cycle, warm, binds, client_json, client)


def latency(size: int, pods: int, workdir: Path, in_process: bool) -> list:
    run = measure_latency(size, pods, workdir, in_process)
    cycle, served = run.cycle, run.tessera.served
    p99 = percentile(cycle, 0.99)
    ext = [f"{percentile(served[v], q):.2f}" for v in ("filter", "prioritize") for q in (0.5, 0.99)]
    return [f"{size:,}", pods, f"{percentile(cycle, 0.5):.2f}", f"{p99:.2f}", f"{max(cycle):.2f}",
            f"{percentile(run.warm, 0.99):.2f}", f"{percentile(run.client_json, 0.5):.2f}", *ext,
            f"{percentile(run.binds, 0.5):.2f}" if run.binds else "-", "yes" if p99 <= 10 else "NO"]


def decisions(url: str) -> dict[tuple[str, str], float]:
    """The extender's decision counters from its /metrics, by (verb, outcome)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tessera_extender_decisions_total":
                key = (sample.labels["verb"], sample.labels["outcome"])
                out[key] = out.get(key, 0) + sample.value
    return out


def _mark_bound_pods(kubeconfig: str) -> None:
    """Stand-in for the device plugins (there is no kubelet behind a light node): watch pods and write
    the ``tessera.io/allocated`` mark on each one bound with an assignment, as the plugin's ledger
    worker does after the kubelet's Allocate."""
    api = KubeApi(api_client(kubeconfig))
    plugin = NodeApi(api_client(kubeconfig), "")
    marked: set[str] = set()
    _, version = api.list("pods")
    for event in api.watch("pods", version, lambda _: None, timeout_s=300):
        pod = event.get("object") or {}
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if ((pod.get("spec") or {}).get("nodeName") and ANNOTATION_ASSIGNMENT in annotations
                and ANNOTATION_ALLOCATED not in annotations and meta.get("uid") not in marked):
            marked.add(meta.get("uid"))
            plugin.patch_pod_annotations(meta["namespace"], meta["name"], {ANNOTATION_ALLOCATED: "main"})


def throughput(size: int, pods: int, workdir: Path, in_process: bool) -> list:
    bench = BenchCluster(size, workdir, in_process)
    rng = random.Random(11)
    for k in range(pods):
        bench.create_pod(make_pod(f"tp-{k}", rng))
    proc, url = extender(bench.kubeconfig, workdir)
    api = KubeApi(api_client(str(bench.kubeconfig)))
    # The device plugins' allocated marks come from another process, as they do from the nodes.
    marker = multiprocessing.get_context("fork").Process(target=_mark_bound_pods, args=(str(bench.kubeconfig),),
                                                         daemon=True)
    marker.start()
    loop = SimScheduler(api, url, bind_workers=4, retry_s=0.2)
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    loop.start()
    deadline = t0 + 120
    while loop.bound < pods and time.perf_counter() < deadline:
        time.sleep(0.01)
    took = time.perf_counter() - t0
    bound = loop.bound
    loop.stop()
    marker.terminate()
    marker.join(5)
    gc.unfreeze()
    refused = decisions(url).get(("bind", "refused"), 0)
    api.close()
    proc.terminate()
    proc.wait(10)
    bench.stop()
    rate = bound / took
    return [f"{size:,}", pods, bound, f"{took:.2f}", f"{rate:.0f}", f"{refused:.0f}", "yes" if rate >= 200 else "NO"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--bind-nodes", type=int, default=1000)
    p.add_argument("--bind-pods", type=int, default=1000)
    p.add_argument("--in-process-apiserver", action="store_true",
                   help="run the API server in this process (its threads and GC then count in the timings)")
    args = p.parse_args(argv)
    where = "in this process" if args.in_process_apiserver else "in its own process"
    configure_logging("warning", "json", stream=open("/dev/null", "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="tessera-extbench-") as tmp:
        rows = [latency(int(s), args.pods, Path(tmp) / f"lat{s}", args.in_process_apiserver)
                for s in args.sizes.split(",")]
        print(render_table(["nodes", "pods", "round trip f+p p50 ms", "p99 ms", "max ms", "warm p99 ms",
                            "client JSON (orjson) p50 ms", "extender filter p50", "p99", "extender prioritize p50", "p99", "bind p50 ms",
                            "round-trip p99 <= 10 ms"], rows,
                           title=f"Extender over HTTP, fragmentation policy, 8 GPUs per node (API server {where}). "
                                 "Round trip: filter+prioritize as the Python client sees it (its JSON decode "
                                 "included); extender: its own ms per call (Server-Timing)"))
        print()
        row = throughput(args.bind_nodes, args.bind_pods, Path(tmp) / "tp", args.in_process_apiserver)
        print(render_table(["nodes", "pods", "bound", "seconds", "pods/s", "binds refused", ">= 200/s"], [row],
                           title="End to end through simscheduler (filter, prioritize, bind) on the embedded "
                                 f"API server ({where})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
