"""``tessera demo``: Tessera on the embedded cluster, with what happened printed as tables.

It starts the embedded cluster (API server, simulated kubelets, fake-GPU nodes), reads every node's
GPUs through the production NVML layer on its fake node, and runs demo pods through the kubelets,
under real runc with tessera-hook where runc is available. ``--keep`` leaves the cluster up for
``kubectl`` until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import threading
import urllib.request
from pathlib import Path

from tessera import ANNOTATION_ALLOCATED
from tessera.log import configure_logging
from tessera.progress import Progress
from tessera.table import render_table

DEMO_NAMESPACE = "default"


def _pod(name: str, env: dict[str, str] | None = None, command: list[str] | None = None) -> dict:
    container: dict = {"name": "main", "image": "busybox",
                       "command": command or ["sh", "-c", "ls /dev | grep -c nvidia || true; sleep 30"],
                       "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": DEMO_NAMESPACE},
           "spec": {"containers": [container]}}
    return pod


def _bind(core, name: str, node: str) -> None:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    core.create_namespaced_binding(DEMO_NAMESPACE, body, _preload_content=False)


def _node_rows(cluster, core) -> list[list[object]]:
    rows = []
    for node in core.list_node().items:
        spec = cluster.nodes[node.metadata.name].spec
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown")
        extended = {k: v for k, v in (node.status.allocatable or {}).items() if "/" in k}
        rows.append([node.metadata.name, spec.mode, f"{spec.gpus}x {spec.model}", "Ready" if ready == "True" else ready,
                     ", ".join(f"{k}={v}" for k, v in sorted(extended.items())) or "(no device plugin yet)"])
    return rows


def _gpu_rows(cluster) -> list[list[object]]:
    """One row per node: what the NVML layer read of its GPUs."""
    from tessera.inventory_table import read_node

    rows = []
    for name, node in cluster.nodes.items():
        gpus, _samples = read_node(node.nvml_description)
        first = gpus[0]
        numa = sorted({g.numa_node for g in gpus if g.numa_node is not None})
        peers = max(len(g.nvlink_peers) for g in gpus)
        mig = ", ".join(m.profile for m in first.mig_instances) if first.mig_enabled else "off"
        rows.append([name, len(gpus), first.name, first.memory_total_mib, first.sm_count,
                     ",".join(map(str, numa)), f"{peers} peers" if peers else "none", mig])
    return rows


def run_demo(args: argparse.Namespace) -> int:
    """Entry of ``tessera demo``; 0 when every step did what it says."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no GOAWAY notices as the plugins stop
    import simcluster.running as simrunning
    from simcluster.exporters import start_exporters, stop_exporters
    from simcluster.plugins import device_plugins
    from simcluster.cluster import ClusterDescriptionError, load_cluster
    from simcluster.kubelet.runtime import unavailable

    # The tables say what happened; the daemons' own logs would interleave with the progress lines.
    configure_logging("error", "console" if sys.stderr.isatty() else "json")
    try:
        description = load_cluster(args.cluster)
    except ClusterDescriptionError as exc:
        print(f"tessera demo: {exc}", file=sys.stderr)
        return 1
    runc_missing = unavailable("runc")
    oci_runtime = None if runc_missing else "runc"
    progress = Progress(total=6)
    print(f"Tessera demo: an embedded cluster of {len(description.nodes)} simulated GPU nodes "
          f"({description.source})", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    workdir = Path(args.workdir) if args.workdir else None
    with progress.step(f"starting the API server and {len(description.nodes)} simulated kubelets"):
        context = simrunning.running(description, workdir=workdir, oci_runtime=oci_runtime, seed=7)
        cluster = context.__enter__()
    exporters: dict = {}
    plugins_context = None
    try:
        core = cluster.core_v1()
        with progress.step("waiting for every Node to be Ready"):
            cluster.wait_for(lambda: len(core.list_node().items) == len(description.nodes), 10, what="nodes")
        with progress.step("reading each node's GPUs through the NVML layer (fake NVML per node)"):
            gpu_rows = _gpu_rows(cluster)
        with progress.step(f"starting {len(cluster.nodes)} device plugins; waiting for each node's resources"):
            plugins_context = device_plugins(cluster)
            plugins_context.__enter__()
            cluster.wait_for(lambda: _all_advertised(core, cluster), 30, what="every node's Tessera resources")
        with progress.step(f"starting {len(cluster.nodes)} exporters (one per node, as the DaemonSet runs them)"):
            exporters = start_exporters(cluster)
        pods = _demo_pods(description, cluster.workdir if oci_runtime else None)
        with progress.step(f"running {len(pods)} demo pods "
                           + ("under runc with tessera-hook" if oci_runtime else f"(no runc: {runc_missing})")):
            for pod, node in pods:
                core.create_namespaced_pod(DEMO_NAMESPACE, pod)
                _bind(core, pod["metadata"]["name"], node)
            cluster.wait_for(lambda: _settled(core, len(pods)), 20, what="demo pods to run or be refused")
            pod_rows = _pod_rows(core)
        print()
        print(render_table(["NODE", "MODE", "GPUS", "STATUS", "ALLOCATABLE (Tessera resources)"],
                           _node_rows(cluster, core), title="Nodes (from the API server)"))
        print()
        print(render_table(["NODE", "GPUS", "MODEL", "MiB EACH", "SMs", "NUMA", "NVLINK", "MIG LAYOUT PER GPU"],
                           gpu_rows, title="GPUs (read through Tessera's NVML layer on each fake node)"))
        print()
        print(render_table(["POD", "ASKS", "NODE", "PHASE", "GRANT (tessera.io/allocated)", "WHAT HAPPENED"],
                           pod_rows, title="Demo pods"))
        print()
        print(render_table(["NODE", "EXPORTER", "GPUS", "GPU MEMORY USED MiB", "HEALTHY", "SERIES"],
                           _exporter_rows(exporters), title="Exporters (scraped once, dcgm-exporter names)"))
        print()
        print(f"Done in {progress.elapsed():.1f}s. Pods were bound directly and placed by each node's device plugin; "
              "the extender joins this demo as its issue lands.")
        if args.keep:
            _keep_running(cluster, stop, exporters)
        return 0
    finally:
        stop_exporters(exporters)
        if plugins_context is not None:
            plugins_context.__exit__(None, None, None)
        context.__exit__(None, None, None)


# The GPU pods of the demo by the mode of the node they go to: (name, resource limits).
GPU_PODS = {
    "exclusive": [("two-whole-gpus", {"nvidia.com/gpu": "2"})],
    "mig": [("mig-3g", {"nvidia.com/mig-3g.40gb": "1"}), ("mig-1g", {"nvidia.com/mig-1g.10gb": "1"})],
    "mps": [("mps-50-8", {"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}),
            ("mps-30-20", {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "20"}),
            ("mps-200", {"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "160"})],
    "timeslice": [("timesliced", {"nvidia.com/gpu.shared": "1"})],
}


def _demo_pods(description, workdir: Path | None) -> list[tuple[dict, str]]:
    """GPU pods of each kind on the node of that mode; one CPU pod per node; on the first node also a CPU
    pod whose image sets NVIDIA_VISIBLE_DEVICES=all (it starts and sees no GPU) and, with a real runtime, a
    pod that mounts a GPU device node without a grant (tessera-hook refuses it)."""
    pods = []
    for node in description.nodes:
        for name, limits in GPU_PODS.get(node.mode, []):
            pod = _pod(name, command=["sh", "-c", "ls /dev | grep nvidia; env | grep -E 'VISIBLE|MPS'; sleep 30"])
            pod["spec"]["containers"][0]["resources"] = {"limits": limits}
            pods.append((pod, node.name))
    pods += [(_pod(f"cpu-{n.name}"), n.name) for n in description.nodes]
    first = description.nodes[0].name
    pods.append((_pod("cuda-image-cpu-pod", env={"NVIDIA_VISIBLE_DEVICES": "all"}), first))
    if workdir is not None and os.geteuid() == 0:
        device = workdir / "host-dev" / "nvidia0"
        device.parent.mkdir(exist_ok=True)
        if not device.exists():
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(195, 0))  # a GPU device node, no driver behind it
        sneaky = _pod("gpu-without-a-grant")
        sneaky["spec"]["volumes"] = [{"name": "gpu", "hostPath": {"path": str(device)}}]
        sneaky["spec"]["containers"][0]["volumeMounts"] = [{"name": "gpu", "mountPath": "/dev/nvidia0"}]
        pods.append((sneaky, first))
    return pods


def _settled(core, count: int) -> bool:
    pods = core.list_namespaced_pod(DEMO_NAMESPACE).items
    def settled(p) -> bool:
        if p.status.phase in ("Running", "Succeeded", "Failed"):
            return True
        return any(s.state and s.state.waiting for s in p.status.container_statuses or [])
    return len(pods) == count and all(settled(p) for p in pods)


def _pod_rows(core) -> list[list[object]]:
    rows = []
    for pod in core.list_namespaced_pod(DEMO_NAMESPACE).items:
        events = core.list_namespaced_event(DEMO_NAMESPACE, field_selector=f"involvedObject.name={pod.metadata.name}")
        last = events.items[-1] if events.items else None
        what = f"{last.reason}: {last.message}" if last else ""
        limits = pod.spec.containers[0].resources.limits or {}
        asks = ", ".join(f"{k.split('/')[-1]}={v}" for k, v in sorted(limits.items())) or "cpu only"
        rows.append([pod.metadata.name, asks, pod.spec.node_name, pod.status.phase,
                     _grant_summary((pod.metadata.annotations or {}).get(ANNOTATION_ALLOCATED)), what[:160]])
    return rows


def _grant_summary(allocated: str | None) -> str:
    """``GPU-3d1c.. core 50% 8GiB`` from the plugin's ``tessera.io/allocated`` record."""
    if not allocated:
        return ""
    doc = json.loads(allocated)
    parts = []
    for resources in doc.get("containers", {}).values():
        gpus: list[str] = []
        extra = []
        for name, grant in sorted(resources.items()):
            gpus += [g for g in grant.get("gpus", []) if g not in gpus]
            if "core" in grant:
                extra.append(f"core {grant['core']}%")
            if "memGiB" in grant:
                extra.append(f"{grant['memGiB']} GiB")
        parts.append(" ".join([",".join(g[:12] for g in gpus)] + extra))
    return "; ".join(parts)


def _all_advertised(core, cluster) -> bool:
    """Every node shows its Tessera resources in allocatable (its plugin registered, the status caught up)."""
    nodes = core.list_node().items
    return len(nodes) == len(cluster.nodes) and all(
        any(k.startswith("nvidia.com/") and v != "0" for k, v in (n.status.allocatable or {}).items())
        for n in nodes)


def _exporter_rows(exporters) -> list[list[object]]:
    """Scrape each exporter once and summarise what it serves."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for name, exporter in exporters.items():
        with urllib.request.urlopen(exporter.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        used = sum(s.value for s in families["DCGM_FI_DEV_FB_USED"].samples) if "DCGM_FI_DEV_FB_USED" in families else 0
        health = families.get("tessera_gpu_health")
        healthy = sum(1 for s in health.samples if s.value == 1) if health else 0
        gpus = len({s.labels.get("UUID") for s in health.samples}) if health else 0
        series = sum(len(f.samples) for f in families.values())
        rows.append([name, exporter.url, gpus, int(used), f"{healthy}/{gpus}", series])
    return rows


def _keep_running(cluster, stop: threading.Event, exporters) -> None:
    print("\nThe cluster stays up; kubectl and the kubernetes client reach it with:\n")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    for name, exporter in exporters.items():
        print(f"# {name} exporter: {exporter.url}/metrics")
    print("\nCtrl-C or SIGTERM stops it.", flush=True)
    while not stop.wait(0.5):
        pass
    print("stopping", file=sys.stderr)
