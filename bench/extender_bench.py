"""The extender over HTTP against the embedded API server (light nodes of 8 A100-40GB GPUs in mps mode).

    .venv/bin/python bench/extender_bench.py [--sizes 1000,5000] [--pods 300] [--bind-nodes 1000 --bind-pods 1000]

1. Latency: for each size, ``pods`` scheduling cycles as kube-scheduler runs them: POST /filter with
   the pod and every node name (``nodeCacheCapable``), POST /prioritize with the nodes that passed
   (timed together: p50, p99, max), then POST /bind to a top node (timed apart). Pods follow the
   placement bench's mix of MPS shares and whole GPUs; fragmentation policy (the Fleet path).
2. Throughput: ``bind-pods`` pending pods scheduled end to end by ``extender.simscheduler`` (watch,
   filter, prioritize, bind: signed assignment PATCH + Binding POST on the API server): pods bound per
   second. The device plugin's ``tessera.io/allocated`` mark is written right after each bind (there
   is no kubelet behind a light node), so the per-shape rule holds a node only for that moment.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extender.kubeapi import KubeApi, api_client  # noqa: E402
from extender.launch import free_port, spawn_extender, wait_healthy  # noqa: E402
from extender.simscheduler import SimScheduler  # noqa: E402
from simcluster.apiserver import ApiServer  # noqa: E402
from simcluster.cluster import NodeSpec  # noqa: E402
from simcluster.lightnodes import light_node_object  # noqa: E402
from tessera import ANNOTATION_ALLOCATED  # noqa: E402
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


def cluster(size: int, workdir: Path) -> tuple[ApiServer, Path]:
    srv = ApiServer(history_size=200_000).start()
    template = light_node_object(NodeSpec("node-00000", "A100-SXM4-40GB", 8, mode="mps", cpu_milli=96000,
                                          memory_mib=768 * 1024))
    text = json.dumps(template)
    for i in range(size):  # same inventory shape, own names and UUIDs
        name = f"node-{i:05d}"
        srv.registry.create("nodes", json.loads(text.replace("node-00000", name).replace("GPU-", f"GPU-{i:05d}")))
    return srv, srv.write_kubeconfig(workdir / "kubeconfig")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def extender(kubeconfig: Path, workdir: Path):
    """tessera-extender in its own process (as deployed), ready; and its URL."""
    listen = f"127.0.0.1:{free_port()}"
    proc = spawn_extender(kubeconfig, workdir, listen, extra_args=["--no-leader-election"])
    wait_healthy(f"http://{listen}", 120)
    return proc, f"http://{listen}"


def latency(size: int, pods: int, workdir: Path) -> list:
    srv, kubeconfig = cluster(size, workdir)
    proc, url = extender(kubeconfig, workdir)
    names = [f"node-{i:05d}" for i in range(size)]
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))

    def call(verb, args):
        conn.request("POST", f"/{verb}", json.dumps(args).encode(), {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())

    rng = random.Random(7)
    cycle, binds, warm = [], [], []
    seen: set[str] = set()
    try:
        for k in range(pods):
            pod = srv.registry.create("pods", make_pod(f"lat-{k}", rng), namespace="default")
            t0 = time.perf_counter()
            result = call("filter", {"Pod": pod, "Nodes": None, "NodeNames": names})
            fits = result["NodeNames"] or []
            scores = call("prioritize", {"Pod": pod, "NodeNames": fits}) if fits else []
            took = (time.perf_counter() - t0) * 1000
            cycle.append(took)
            shape = json.dumps(pod["spec"]["containers"][0]["resources"]["limits"], sort_keys=True)
            # Warm: a shape seen before, and not a cycle right after the learned model was rebuilt
            # (every shape_window/10 binds), when every node is scored again.
            if shape in seen and k % 100 > 9:
                warm.append(took)
            seen.add(shape)
            if scores:
                best = max(scores, key=lambda s: s["Score"])["Host"]
                t1 = time.perf_counter()
                err = call("bind", {"PodName": pod["metadata"]["name"], "PodNamespace": "default",
                                    "PodUID": pod["metadata"]["uid"], "Node": best})["Error"]
                binds.append((time.perf_counter() - t1) * 1000)
                if not err:
                    srv.registry.patch("pods", pod["metadata"]["name"],
                                       {"metadata": {"annotations": {ANNOTATION_ALLOCATED: "main"}}}, namespace="default")
    finally:
        conn.close()
        proc.terminate()
        proc.wait(10)
        srv.stop()
    return [f"{size:,}", pods, f"{percentile(cycle, 0.5):.2f}", f"{percentile(cycle, 0.99):.2f}",
            f"{max(cycle):.2f}", f"{percentile(warm, 0.99):.2f}", f"{percentile(binds, 0.5):.2f}" if binds else "-",
            "yes" if percentile(warm, 0.99) <= 10 else "NO"]


def throughput(size: int, pods: int, workdir: Path) -> list:
    srv, kubeconfig = cluster(size, workdir)
    rng = random.Random(11)
    for k in range(pods):
        srv.registry.create("pods", make_pod(f"tp-{k}", rng), namespace="default")
    proc, url = extender(kubeconfig, workdir)
    api = KubeApi(api_client(str(kubeconfig)))

    def allocated(pod: dict, node: str) -> None:
        srv.registry.patch("pods", pod["metadata"]["name"],
                           {"metadata": {"annotations": {ANNOTATION_ALLOCATED: "main"}}}, namespace="default")

    loop = SimScheduler(api, url, bind_workers=4, retry_s=0.2, on_bound=allocated)
    t0 = time.perf_counter()
    loop.start()
    deadline = t0 + 120
    while loop.bound < pods and time.perf_counter() < deadline:
        time.sleep(0.01)
    took = time.perf_counter() - t0
    bound = loop.bound
    loop.stop()
    api.close()
    proc.terminate()
    proc.wait(10)
    srv.stop()
    rate = bound / took
    return [f"{size:,}", pods, bound, f"{took:.2f}", f"{rate:.0f}", "yes" if rate >= 200 else "NO"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--bind-nodes", type=int, default=1000)
    p.add_argument("--bind-pods", type=int, default=1000)
    args = p.parse_args(argv)
    configure_logging("warning", "json", stream=open("/dev/null", "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="tessera-extbench-") as tmp:
        rows = [latency(int(s), args.pods, Path(tmp) / f"lat{s}") for s in args.sizes.split(",")]
        print(render_table(["nodes", "pods", "filter+prioritize p50 ms", "p99 ms", "max ms", "warm p99 ms",
                            "bind p50 ms", "warm p99 <= 10 ms"], rows,
                           title="Extender over HTTP, fragmentation policy, 8 GPUs per node"))
        print()
        row = throughput(args.bind_nodes, args.bind_pods, Path(tmp) / "tp")
        print(render_table(["nodes", "pods", "bound", "seconds", "pods/s", ">= 200/s"], [row],
                           title="End to end through simscheduler (filter, prioritize, bind) on the embedded API server"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
