"""DRA node benchmark: Tessera's DRA driver on a real kubelet v1.37.2 and containerd 2.4, beside the
device plugin, on the mixed node (realcluster.nodeside, realcluster.draside).

    python bench/dra_node_bench.py [--pods 20]

In one run on one machine, ``--pods`` pods one at a time (each deleted before the next) of each path
to one whole A100, and of one path to a MIG device:

- **DRA**: a ResourceClaimTemplate of class ``gpu.tessera.io``, allocated by kube-scheduler's own DRA
  allocator (default scheduler), prepared by the real kubelet through the driver (CDI spec), started by
  containerd past tessera-hook;
- **device plugin**: ``nvidia.com/gpu: 1``, placed by the tessera-scheduler through the extender,
  allocated by the device plugin;
- **DRA MIG**: a claim of class ``mig.gpu.tessera.io`` for a 1g.10gb device on the MIG GPU, made at
  prepare (fake NVML: the control-file write every process of the node reads) and removed at unprepare.

Printed: bound to started (the pod's ``nodeName`` seen, to its phase leaving Pending) per path, median
and max, and their ratio; NodePrepareResources per claim as the driver times it (its log's ``seconds``:
reading the claim from the API server, signing, the CDI spec and the checkpoint written and synced),
p50 and p99, for whole GPUs and for MIG devices; and as the kubelet times its gRPC call (``dra_grpc_operations_duration_seconds``, mean)
against the driver's own mean, and its whole PrepareResources per pod (``dra_operations_duration_seconds``). Wall-clock times vary from day to day on shared machines: compare ratios.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import realcluster  # noqa: E402
from realcluster.draside import start_dra_plugin  # noqa: E402
from realcluster.node import node_prerequisites, start_node, stop_node  # noqa: E402
from realcluster.nodeside import (  # noqa: E402
    MIXED_NODE_ALLOCATABLE, MIXED_NODE_DRA_CONFIG, MIXED_NODE_PLUGIN_CONFIG, install_node_side, log_events,
    mixed_node_description, stop_node_side,
)
from simcluster.embedded import poll_until  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

NODE = "bench-node"
IMAGE = "tessera.local/busybox:test"
TEMPLATE = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": "one-gpu", "namespace": "default"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu",
                                                        "exactly": {"deviceClassName": "gpu.tessera.io"}}]}}}}
MIG_TEMPLATE = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": "one-mig", "namespace": "default"},
                "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                    "deviceClassName": "mig.gpu.tessera.io", "selectors": [{"cel": {
                        "expression": 'device.attributes["gpu.tessera.io"].profile == "1g.10gb"'}}]}}]}}}}
PATHS = {"dra": "DRA (claim, gpu.tessera.io)", "dp": "device plugin (nvidia.com/gpu: 1)",
         "mig": "DRA MIG (claim, 1g.10gb made at prepare)"}


def poll(predicate, timeout_s: float, what: str, step_s: float = 0.02):
    """``predicate()``'s first truthy value (a hang guard, not a goal)."""
    return poll_until(predicate, timeout_s, step_s, what)


def pod_doc(name: str, path: str) -> dict:
    """A pod of ``path`` (a key of :data:`PATHS`)."""
    dra = path != "dp"
    container = {"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["true"],
                 "resources": {"claims": [{"name": "gpu"}]} if dra else {"limits": {"nvidia.com/gpu": "1"}}}
    spec = {"restartPolicy": "Never", "hostNetwork": True, "nodeSelector": {"kubernetes.io/hostname": NODE},
            "containers": [container]}
    if dra:
        template = "one-mig" if path == "mig" else "one-gpu"
        spec["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": template}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def admit_once(cluster, name: str, path: str) -> float:
    """Seconds from the pod's nodeName seen to its phase leaving Pending; the pod is deleted after."""
    core = cluster.core_v1()
    cluster.apply([pod_doc(name, path)])
    poll(lambda: core.read_namespaced_pod(name, "default").spec.node_name, 120, f"{name} bound")
    bound = time.monotonic()
    pod = poll(lambda: (p := core.read_namespaced_pod(name, "default")).status.phase != "Pending" and p, 120,
               f"{name} started")
    started = time.monotonic()
    if pod.status.phase == "Failed":
        raise RuntimeError(f"{name} failed: {pod.status}")
    cluster.kubectl("delete", "pod", name, "--wait=true", "--timeout=120s")
    return started - bound


def kubelet_means(text: str, metric: str, label: str) -> dict[str, float]:
    """Mean seconds per value of ``label`` (its last ``/`` part: gRPC methods are full paths) of the
    kubelet histogram ``metric`` in its metrics ``text``."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf'{metric}_(sum|count)\{{(.*)\}} (\S+)', line)
        if not match:
            continue
        key = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2))).get(label, "").rsplit("/", 1)[-1]
        target = sums if match.group(1) == "sum" else counts
        target[key] = target.get(key, 0.0) + float(match.group(3))
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20, help="pods of each path, one at a time")
    args = parser.parse_args()
    configure_logging("error", "json")
    binaries = realcluster.find_binaries()
    missing = node_prerequisites(binaries)
    if missing:
        print("this machine cannot run a real node: needs " + "; ".join(missing), file=sys.stderr)
        return 2
    with realcluster.running(binaries=binaries, oci_runtime="runc") as cluster:
        node = start_node(cluster, NODE)
        side = dra = None
        try:
            side = install_node_side(cluster, node, mixed_node_description(NODE), MIXED_NODE_PLUGIN_CONFIG,
                                     dra_config=MIXED_NODE_DRA_CONFIG)
            core = cluster.core_v1()
            poll(lambda: all((core.read_node(NODE).status.allocatable or {}).get(k) == v
                             for k, v in MIXED_NODE_ALLOCATABLE.items()), 120, "allocatable whole", 0.2)
            dra = start_dra_plugin(cluster, side)
            cluster.apply([TEMPLATE, MIG_TEMPLATE])
            offset = dra.plugin.log_path.stat().st_size
            paths = {label: [] for label in PATHS.values()}
            for n in range(args.pods):   # interleaved, so every path sees the same machine load
                for key, label in PATHS.items():
                    paths[label].append(admit_once(cluster, f"{key}-{n}", key))
            events = [e for e in log_events(dra.plugin.log_path, offset) if e.get("event") == "claim_prepared"]
            prepared = [e["seconds"] for e in events if not any("-mig-" in d for d in e["devices"])]
            prepared_mig = [e["seconds"] for e in events if any("-mig-" in d for d in e["devices"])]
            text = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics").stdout
            grpc_means = kubelet_means(text, "dra_grpc_operations_duration_seconds", "method_name")
            operation_means = kubelet_means(text, "dra_operations_duration_seconds", "operation_name")
        finally:
            if dra is not None:
                dra.plugin.stop()
            if side is not None:
                stop_node_side(side)
            stop_node(node)

    dra_times, dp_times, mig_times = paths.values()
    print(f"\nBound to started ({args.pods} pods a path, one at a time, interleaved)")
    rows = [[name, f"{statistics.median(v) * 1000:.0f}", f"{max(v) * 1000:.0f}"] for name, v in paths.items()]
    print(render_table(["path (one whole GPU, or one MIG device)", "median ms", "max ms"], rows))
    print(f"ratio DRA / device plugin (medians): {statistics.median(dra_times) / statistics.median(dp_times):.2f}")
    print(f"ratio DRA MIG / DRA whole GPU (medians): {statistics.median(mig_times) / statistics.median(dra_times):.2f}")
    own = statistics.fmean(prepared + prepared_mig)
    print(f"\nNodePrepareResources per claim ({len(prepared)} whole-GPU claims, {len(prepared_mig)} MIG claims)")
    rows = [[f"the driver's own, {what}", f"{percentile(values, 0.5) * 1000:.1f}",
             f"{percentile(values, 0.99) * 1000:.1f}", f"{statistics.fmean(values) * 1000:.1f}"]
            for what, values in (("whole GPU", prepared), ("MIG device made", prepared_mig))]
    grpc_mean = grpc_means.get("NodePrepareResources")
    operation_mean = operation_means.get("PrepareResources")
    rows.append(["the kubelet's gRPC call", "-", "-", f"{grpc_mean * 1000:.1f}" if grpc_mean else "-"])
    rows.append(["the kubelet's PrepareResources (per pod)", "-", "-",
                 f"{operation_mean * 1000:.1f}" if operation_mean else "-"])
    print(render_table(["", "p50 ms", "p99 ms", "mean ms"], rows))
    print(f"ratio MIG / whole-GPU prepare (medians): "
          f"{percentile(prepared_mig, 0.5) / percentile(prepared, 0.5):.2f}")
    if grpc_mean:
        print(f"ratio kubelet gRPC call / driver's own (means): {grpc_mean / own:.2f}")
    if not grpc_mean or not operation_mean:
        print(f"kubelet DRA metrics found: {sorted(grpc_means)} {sorted(operation_means)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
