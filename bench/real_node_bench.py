"""Real node benchmark: kubelet v1.37.2 and containerd 2.4 (scripts/build-kube.sh) with Tessera's node
side installed as deploy/ installs it (realcluster.nodeside), on the mixed node of six fake A100s (five
through the device plugin; the sixth is the DRA driver's, bench/dra_node_bench.py).

    python bench/real_node_bench.py [--pods 5] [--restarts 10]

Two parts, in one run on one machine:

1. **Admission per resource kind.** ``--pods`` pods of each kind, one at a time (each deleted before
   the next), placed by the tessera-scheduler through the extender. For each: bound to started (the
   pod's ``nodeName`` seen, to its phase leaving Pending: the kubelet's admission, the device
   manager's GetPreferredAllocation and Allocate, containerd, runc and tessera-hook), median and max;
   then the same pods on the embedded description's simulated nodes of that kind (the same plugin
   under the simulated kubelet, its containers under runc past the hook), and the ratio.
   Beside it, Allocate as the real kubelet's device manager times it (its
   ``kubelet_device_plugin_alloc_duration_seconds``: the gRPC round trip) against the plugin alone (its
   own ``tessera_deviceplugin_allocate_seconds``: the answer's work without the kubelet), means per
   resource, and their ratio: what the kubelet and gRPC add.
2. **Kubelet restarts** (``--restarts``): the kubelet stopped (SIGTERM) and started again; from its
   start to every Tessera resource registered again (the plugin's log) and to the Node's allocatable
   whole in the API server once they are (the kubelet publishes the drop to 0 only where its first
   status update comes before the plugin's registration: counted), median and max.

Times are wall-clock on this machine and vary from day to day on shared machines: compare the
ratios, and runs made side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import realcluster  # noqa: E402
from realcluster.node import node_prerequisites, start_node, stop_node  # noqa: E402
from realcluster.nodeside import (  # noqa: E402
    MIXED_NODE_ALLOCATABLE, MIXED_NODE_DRA_CONFIG, MIXED_NODE_PLUGIN_CONFIG, install_node_side, log_events,
    mixed_node_description, stop_node_side,
)
from simcluster.embedded import poll_until  # noqa: E402
from simcluster.plugins import device_plugins  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

NODE = "bench-node"
IMAGE = "tessera.local/busybox:test"
MPS_USER = 1000
KINDS = {  # kind: (limits, the simulated node of the embedded description that serves it)
    "whole GPU": ({"nvidia.com/gpu": 1}, "a100-whole"),
    "MIG 1g.10gb": ({"nvidia.com/mig-1g.10gb": 1}, "h100-mig"),
    "MPS 30 % / 8 GiB": ({"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}, "a100-mps"),
    "time-sliced": ({"nvidia.com/gpu.shared": 1}, "t4-timeslice"),
}


def poll(predicate, timeout_s: float, what: str, step_s: float = 0.02):
    """``predicate()``'s first truthy value (a hang guard, not a goal)."""
    return poll_until(predicate, timeout_s, step_s, what)


def pod_doc(name: str, limits: dict, node: str = NODE) -> dict:
    spec = {"restartPolicy": "Never", "hostNetwork": True, "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["true"],
                            "resources": {"limits": {k: str(v) for k, v in limits.items()}}}]}
    if "nvidia.com/mps-core" in limits:
        spec["securityContext"] = {"runAsUser": MPS_USER if node == NODE else os.getuid()}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def admit_once(cluster, name: str, limits: dict, node: str = NODE) -> float:
    """Seconds from the pod's nodeName seen to its phase leaving Pending; the pod is deleted after."""
    core = cluster.core_v1()
    cluster.apply([pod_doc(name, limits, node)])
    pod = poll(lambda: (p := core.read_namespaced_pod(name, "default")).spec.node_name and p, 120, f"{name} bound")
    bound = time.monotonic()
    pod = poll(lambda: (p := core.read_namespaced_pod(name, "default")).status.phase != "Pending" and p, 120,
               f"{name} started")
    started = time.monotonic()
    if pod.status.phase == "Failed":
        raise RuntimeError(f"{name} failed: {pod.status}")
    cluster.kubectl("delete", "pod", name, "--wait=true", "--timeout=120s")
    return started - bound


def histogram_means(text: str, metric: str, label: str) -> dict[str, float]:
    """Mean seconds per ``label`` value of a Prometheus histogram in exposition ``text``."""
    sums, counts = {}, {}
    for line in text.splitlines():
        match = re.match(rf'{metric}_(sum|count)\{{(.*)\}} (\S+)', line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        key = labels.get(label, "")
        (sums if match.group(1) == "sum" else counts)[key] = float(match.group(3))
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


def allocatable_whole(core) -> bool:
    allocatable = core.read_node(NODE).status.allocatable or {}
    return all(allocatable.get(k) == v for k, v in MIXED_NODE_ALLOCATABLE.items())


def registered_since(side, offset: int) -> set[str]:
    """The resources the plugin logged as registered after byte ``offset`` of its log."""
    return {e.get("resource") for e in log_events(side.plugin.log_path, offset) if e.get("event") == "registered"}


def restart_once(cluster, node, side) -> tuple[float, float, bool]:
    """(seconds to every resource registered, seconds to allocatable whole again, whether a drop was
    seen), both from the kubelet's start."""
    core = cluster.core_v1()
    offset = side.plugin.log_path.stat().st_size
    node.kubelet.stop()
    node.kubelet.start()
    start = time.monotonic()
    registered = None
    dropped = False
    while True:
        if registered is None and registered_since(side, offset) >= set(MIXED_NODE_ALLOCATABLE):
            registered = time.monotonic() - start
        whole = allocatable_whole(core)
        dropped = dropped or not whole
        if registered is not None and whole:   # once registered, nothing drops it again
            return registered, time.monotonic() - start, dropped
        if time.monotonic() - start > 180:
            raise TimeoutError("the kubelet's restart did not end with every resource back")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5, help="pods of each kind, one at a time")
    parser.add_argument("--restarts", type=int, default=10, help="kubelet restarts to time")
    args = parser.parse_args()
    configure_logging("error", "json")
    binaries = realcluster.find_binaries()
    missing = node_prerequisites(binaries)
    if missing:
        print("this machine cannot run a real node: needs " + "; ".join(missing), file=sys.stderr)
        return 2
    # The simulated nodes run their containers under runc past tessera-hook too (root, runc, busybox).
    with realcluster.running(binaries=binaries, oci_runtime="runc") as cluster, device_plugins(
            cluster, extender_public_key=str(cluster.tessera.signing_public_key)):
        node = start_node(cluster, NODE)
        side = None
        try:
            side = install_node_side(cluster, node, mixed_node_description(NODE), MIXED_NODE_PLUGIN_CONFIG,
                                     dra_config=MIXED_NODE_DRA_CONFIG)
            core = cluster.core_v1()
            poll(lambda: allocatable_whole(core), 120, "allocatable whole", 0.2)
            admission = {kind: [admit_once(cluster, f"a{i}-{n}", limits) for n in range(args.pods)]
                         for i, (kind, (limits, _)) in enumerate(KINDS.items())}
            simulated = {kind: [admit_once(cluster, f"s{i}-{n}", limits, sim_node) for n in range(args.pods)]
                         for i, (kind, (limits, sim_node)) in enumerate(KINDS.items())}
            kubelet_alloc = histogram_means(cluster.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics").stdout,
                                            "kubelet_device_plugin_alloc_duration_seconds", "resource_name")
            with urllib.request.urlopen(f"{side.metrics_url}/metrics", timeout=10) as resp:
                plugin_alloc = histogram_means(resp.read().decode(), "tessera_deviceplugin_allocate_seconds",
                                               "resource")
            restarts = [restart_once(cluster, node, side) for _ in range(args.restarts)]
        finally:
            if side is not None:
                stop_node_side(side)
            stop_node(node)

    rows = [[kind, f"{statistics.median(v) * 1000:.0f}", f"{max(v) * 1000:.0f}",
             f"{statistics.median(simulated[kind]) * 1000:.0f}",
             f"{statistics.median(v) / statistics.median(simulated[kind]):.1f}"] for kind, v in admission.items()]
    print(f"\nAdmission, bound to started ({args.pods} pods a kind, one at a time): the real kubelet and "
          "containerd vs the plugin under the simulated kubelet (runc and the hook in both)")
    print(render_table(["kind", "real median ms", "real max ms", "simulated median ms", "ratio"], rows))
    rows = []
    for resource in sorted(set(kubelet_alloc) | set(plugin_alloc)):
        k, p = kubelet_alloc.get(resource), plugin_alloc.get(resource)
        rows.append([resource, f"{k * 1000:.2f}" if k else "-", f"{p * 1000:.2f}" if p else "-",
                     f"{k / p:.1f}" if k and p else "-"])
    print("\nAllocate, mean per call: the real kubelet's device manager (gRPC round trip) vs the plugin alone")
    print(render_table(["resource", "kubelet ms", "plugin ms", "ratio"], rows))
    reg = [r[0] for r in restarts]
    back = [r[1] for r in restarts]
    print(f"\nKubelet restarts ({len(restarts)}), from the kubelet's start; allocatable seen to drop in "
          f"{sum(r[2] for r in restarts)} of them")
    rows = [["every resource registered again", f"{statistics.median(reg):.2f}", f"{max(reg):.2f}"],
            ["Node allocatable whole again", f"{statistics.median(back):.2f}", f"{max(back):.2f}"]]
    dropped = [r[1] for r in restarts if r[2]]
    if dropped:
        rows.append(["... where the drop was published", f"{statistics.median(dropped):.2f}", f"{max(dropped):.2f}"])
    print(render_table(["", "median s", "max s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
