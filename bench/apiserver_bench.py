"""Benchmark of the embedded API server with a 1,213-node cluster loaded.

Measures, over HTTP/1.1 keep-alive like a real client: list all nodes, list pods by
``spec.nodeName``, merge-patch of pods, and watch fan-out (N watchers, events delivered per
second). Each measurement runs ``--rounds`` times; the table shows medians.

    .venv/bin/python bench/apiserver_bench.py [--nodes 1213] [--pods 6000] [--watchers 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog  # noqa: E402

from simcluster.apiserver import ApiServer  # noqa: E402


def _quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _node(i: int) -> dict:
    return {
        "metadata": {"name": f"gpu-node-{i:04d}", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                                             "nvidia.com/gpu.count": "8", "tessera.io/gpu-mode": "mps"},
                     "annotations": {"tessera.io/gpu-inventory": json.dumps({"v": 1, "gpus": [
                         {"index": g, "uuid": f"GPU-{i:04d}-{g}", "memory": 81559, "sms": 132} for g in range(8)]})}},
        "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "96", "memory": "1Ti"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _pod(i: int, nodes: int) -> dict:
    return {"metadata": {"name": f"job-{i:05d}", "namespace": "default", "labels": {"app": f"train-{i % 40}"}},
            "spec": {"nodeName": f"gpu-node-{i % nodes:04d}",
                     "containers": [{"name": "main", "image": "cuda:12",
                                     "resources": {"limits": {"nvidia.com/mps-core": "50"}}}]}}


def _rate(conn: http.client.HTTPConnection, method: str, paths: list[str], seconds: float,
          body_for=None, ctype: str = "application/json") -> float:
    n, start, deadline = 0, time.perf_counter(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        path = paths[n % len(paths)]
        body = body_for(n) if body_for else None
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body else {})
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status}")
        n += 1
    return n / (time.perf_counter() - start)


def _fanout(srv: ApiServer, watchers: int, events: int) -> float:
    rv = str(srv.store.resource_version)
    ready = threading.Barrier(watchers + 1)
    done = threading.Semaphore(0)

    def watch() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("GET", f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=30")
        resp = conn.getresponse()
        ready.wait()
        got = 0
        while got < events:
            line = resp.readline()
            if not line:
                break
            if line.strip():
                got += 1
        conn.close()
        done.release()

    threads = [threading.Thread(target=watch, daemon=True) for _ in range(watchers)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    reg = srv.registry
    for i in range(events):
        reg.patch("pods", f"job-{i:05d}", {"metadata": {"annotations": {"bench": str(time.time())}}},
                  "application/merge-patch+json", namespace="default")
    for _ in threads:
        done.acquire(timeout=30)
    return watchers * events / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1213)
    ap.add_argument("--pods", type=int, default=6000)
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each timed request loop")
    args = ap.parse_args()
    _quiet()
    with ApiServer() as srv:
        reg = srv.registry
        t0 = time.perf_counter()
        for i in range(args.nodes):
            reg.create("nodes", _node(i))
        for i in range(args.pods):
            reg.create("pods", _pod(i, args.nodes))
        load = time.perf_counter() - t0
        conn = http.client.HTTPConnection("127.0.0.1", srv.port)
        node_paths = [f"/api/v1/pods?fieldSelector=spec.nodeName%3Dgpu-node-{i:04d}" for i in range(0, args.nodes, 7)]
        patch_paths = [f"/api/v1/namespaces/default/pods/job-{i:05d}" for i in range(0, args.pods, 3)]
        results: dict[str, list[float]] = {"list all nodes": [], "list pods by nodeName": [],
                                           "patch pod (merge)": [], "get node": [], "watch fan-out": []}
        for _ in range(args.rounds):
            results["list all nodes"].append(_rate(conn, "GET", ["/api/v1/nodes"], args.seconds))
            results["list pods by nodeName"].append(_rate(conn, "GET", node_paths, args.seconds))
            results["get node"].append(_rate(conn, "GET", ["/api/v1/nodes/gpu-node-0042"], args.seconds))
            results["patch pod (merge)"].append(_rate(
                conn, "PATCH", patch_paths, args.seconds,
                body_for=lambda n: json.dumps({"metadata": {"annotations": {"tessera.io/allocated": str(n)}}}).encode(),
                ctype="application/merge-patch+json"))
            results["watch fan-out"].append(_fanout(srv, args.watchers, args.events))
        conn.close()
    units = {"watch fan-out": f"events/s delivered ({args.watchers} watchers x {args.events} events)"}
    print(f"apiserver bench: {args.nodes} nodes, {args.pods} pods loaded in-process in {load:.2f}s; "
          f"median of {args.rounds} rounds")
    print(f"{'operation':<24}{'median':>12}  unit")
    print("-" * 72)
    for name, values in results.items():
        print(f"{name:<24}{statistics.median(values):>12,.0f}  {units.get(name, 'requests/s')}")


if __name__ == "__main__":
    main()
