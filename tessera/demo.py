"""``tessera demo``: Tessera on the embedded cluster, with what happened printed as tables.

It starts the embedded cluster (API server, simulated kubelets, fake-GPU nodes), reads every node's
GPUs through the production NVML layer, runs the extender with its admission webhook and a scheduler
loop, a device plugin and an exporter per node, and then pods of each kind: GPU pods pass the webhook
and the extender, are admitted by the kubelets through the device plugins, and start under real runc
with tessera-hook where runc is available. ``--keep`` leaves the cluster up for ``kubectl`` until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request
from contextlib import ExitStack

import kubernetes

from tessera import ANNOTATION_ALLOCATED
from tessera.demo_pods import NAMESPACE as DEMO_NAMESPACE
from tessera.demo_pods import DemoPod, demo_pods
from tessera.log import configure_logging
from tessera.progress import Progress
from tessera.table import render_table


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
    from simcluster.cluster import ClusterDescriptionError, load_cluster
    from simcluster.exporters import start_exporters, stop_exporters
    from simcluster.kubelet.runtime import unavailable
    from simcluster.plugins import device_plugins
    from simcluster.scheduling import scheduling

    # The tables say what happened; the daemons' own logs would interleave with the progress lines.
    configure_logging("error", "console" if sys.stderr.isatty() else "json")
    try:
        description = load_cluster(args.cluster)
    except ClusterDescriptionError as exc:
        print(f"tessera demo: {exc}", file=sys.stderr)
        return 1
    runc_missing = unavailable("runc")
    oci_runtime = None if runc_missing else "runc"
    progress = Progress(total=7)
    print(f"Tessera demo: an embedded cluster of {len(description.nodes)} simulated GPU nodes "
          f"({description.source})", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        with progress.step(f"starting the API server and {len(description.nodes)} simulated kubelets"):
            cluster = stack.enter_context(simrunning.running(description, workdir=args.workdir,
                                                             oci_runtime=oci_runtime, seed=7))
            core = cluster.core_v1()
            cluster.wait_for(lambda: len(core.list_node().items) == len(description.nodes), 10, what="nodes")
        with progress.step("reading each node's GPUs through the NVML layer (fake NVML per node)"):
            gpu_rows = _gpu_rows(cluster)
        with progress.step("starting the extender, its admission webhook (TLS) and the scheduler loop"):
            stack.enter_context(scheduling(cluster))
        with progress.step(f"starting {len(cluster.nodes)} device plugins; waiting for each node's resources"):
            stack.enter_context(device_plugins(cluster))
            cluster.wait_for(lambda: _all_advertised(core, cluster), 30, what="every node's Tessera resources")
        with progress.step(f"starting {len(cluster.nodes)} exporters (one per node, as the DaemonSet runs them)"):
            exporters = start_exporters(cluster)
            stack.callback(stop_exporters, exporters)
        pods = demo_pods(description, cluster.workdir, real_runtime=oci_runtime is not None)
        with progress.step(f"creating {len(pods)} pods: GPU pods through the webhook and the extender"):
            for demo_pod in pods:
                _create(core, demo_pod)
        admitted = [p for p in pods if not p.refusal]
        with progress.step("waiting for the kubelets to admit them and the runtime to start them "
                           + ("under runc with tessera-hook" if oci_runtime else f"(no runc: {runc_missing})")):
            cluster.wait_for(lambda: _settled(core, len(admitted)), 60, what="demo pods to run or be refused")
        _print_report(cluster, core, gpu_rows, pods, exporters)
        print(f"\nDone in {progress.elapsed():.1f}s.")
        if args.keep:
            _keep_running(cluster, stop, exporters)
    return 0


def _create(core, demo_pod: DemoPod) -> None:
    """Create one pod; bind it directly where it has a node; note the webhook's refusal where it refuses."""
    try:
        core.create_namespaced_pod(DEMO_NAMESPACE, demo_pod.body, _preload_content=False)
    except kubernetes.client.ApiException as exc:
        demo_pod.refusal = json.loads(exc.body or "{}").get("message", str(exc))
        return
    if demo_pod.node:
        _bind(core, demo_pod.body["metadata"]["name"], demo_pod.node)


def _print_report(cluster, core, gpu_rows, pods: list[DemoPod], exporters) -> None:
    print()
    print(render_table(["NODE", "MODE", "GPUS", "STATUS", "ALLOCATABLE (Tessera resources)"],
                       _node_rows(cluster, core), title="Nodes (from the API server)"))
    print()
    print(render_table(["NODE", "GPUS", "MODEL", "MiB EACH", "SMs", "NUMA", "NVLINK", "MIG LAYOUT PER GPU"],
                       gpu_rows, title="GPUs (read through Tessera's NVML layer on each fake node)"))
    print()
    print(render_table(["POD", "ASKS", "NODE", "PHASE", "GRANT (tessera.io/allocated)", "WHAT HAPPENED"],
                       _pod_rows(core), title="Pods (GPU pods placed by the extender, allocated by the plugins)"))
    refused = [p for p in pods if p.refusal]
    if refused:
        print()
        print(render_table(["POD", "REFUSED AT CREATION (what kubectl apply shows)"],
                           [[p.body["metadata"]["name"], p.refusal[:150]] for p in refused],
                           title="Refused by the admission webhook"))
    print()
    print(render_table(["NODE", "EXPORTER", "GPUS", "GPU MEMORY USED MiB", "HEALTHY", "SERIES"],
                       _exporter_rows(exporters), title="Exporters (scraped once, dcgm-exporter names)"))


def _settled(core, count: int) -> bool:
    """Every created pod bound and Running, Succeeded or Failed, or waiting with the runtime's refusal."""
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
