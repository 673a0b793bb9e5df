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
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import kubernetes

from tessera_cli import demo_fault
from tessera_cli.demo_control_plane import ControlPlane, ControlPlaneUnavailable, choose
from tessera_cli import demo_report as report
from tessera_cli import demo_watch as watch
from tessera_cli.demo_pods import DEMO_NAMESPACE
from tessera_cli.demo_pods import DemoPod, demo_pods
from tessera.extras import missing_pictures
from tessera.log import configure_logging
from tessera_cli.occupancy_png import draw_occupancy
from tessera_cli.progress import Progress
from tessera.table import render_table

if TYPE_CHECKING:
    from simcluster.cluster import ClusterDescription

DEFAULT_PNG = "tessera-demo-occupancy.png"
# Columns of free text: wrapped at spaces beyond these widths, so a table stays readable in a terminal.
WRAPPED_COLUMNS = {"ALLOCATABLE (Tessera resources)": 60, "WHAT HAPPENED": 60, "WHAT IT SHOWS": 70, "AFTER": 50,
                   "REFUSED AT CREATION (what kubectl apply shows)": 80, "DETAIL": 70}
RULES = Path(__file__).resolve().parents[1] / "deploy" / "alerts" / "tessera-rules.yaml"


def run_demo(args: argparse.Namespace) -> int:
    """Entry of ``tessera demo``; 0 when every step did what it says. A daemon that cannot start ends the
    demo with one line naming it, its node and the log to read (the working directory is kept)."""
    from simcluster.readiness import NotReady

    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no GOAWAY notices as the plugins stop
    # The tables say what happened; the daemons' own logs would interleave with the progress lines.
    configure_logging("error", "console" if sys.stderr.isatty() else "json")
    from simcluster.cluster import ClusterDescriptionError, load_cluster
    try:
        description = load_cluster(args.cluster)
        plane = choose(args)
    except (ClusterDescriptionError, ControlPlaneUnavailable) as exc:
        print(f"tessera demo: {exc}", file=sys.stderr)
        return 1
    workdir: list[Path] = []
    try:
        return _run(args, description, plane, workdir)
    except NotReady as exc:
        kept = f" (every log is kept under {workdir[0]})" if workdir else ""
        print(f"tessera demo: {exc}{kept}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, description: ClusterDescription, plane: ControlPlane,
         workdir: list[Path]) -> int:
    """The demo's steps on ``plane``; ``workdir`` receives the cluster's working directory as soon as it exists."""
    from simcluster.exporters import start_exporters, stop_exporters
    from simcluster.kubelet.runtime import unavailable
    from simcluster.prometheus import prometheus_missing
    from simcluster.readiness import wait_ready

    runc_missing = unavailable("runc")
    oci_runtime = None if runc_missing else "runc"
    no_prometheus = prometheus_missing()
    progress = Progress(total=10)
    print(f"Tessera demo: {plane.describe(len(description.nodes))} ({description.source})", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        with progress.step(plane.cluster_step(len(description.nodes))) as step:
            cluster = plane.start_cluster(stack, description, args, oci_runtime)
            workdir.append(cluster.workdir)
            core = cluster.core_v1()
            wait_ready([watch.node_registered(core, name) for name in cluster.nodes], "its Node was registered",
                       report=step.note)
        with progress.step("reading each node's GPUs through the NVML layer (fake NVML per node)"):
            gpus = report.gpu_rows(cluster)
        with progress.step(plane.scheduling_step()) as step:
            sched = plane.start_scheduling(stack, cluster, step.note)
        with progress.step(f"starting {len(cluster.nodes)} device plugins; waiting for each to register with its "
                           "kubelet and its node to show the Tessera resources") as step:
            plugins = plane.start_plugins(stack, cluster)
            wait_ready([watch.resources_advertised(core, cluster, plugins, name) for name in cluster.nodes],
                       "its node showed its Tessera resources", report=step.note, interval_s=0.25)
        with progress.step(f"starting {len(cluster.nodes)} exporters (one per node, as the DaemonSet runs them); "
                           "waiting for each to answer /healthz") as step:
            exporters = start_exporters(cluster, report=step.note)
            stack.callback(stop_exporters, exporters)
        with progress.step("starting Prometheus with Tessera's alert rules; waiting for it to scrape the exporters "
                           "and the extender" if not no_prometheus else f"no Prometheus ({no_prometheus})") as step:
            prom = None if no_prometheus else _start_prometheus(stack, cluster, exporters, sched.url, step.note)
        pods = demo_pods(description, cluster.workdir, real_runtime=oci_runtime is not None)
        with progress.step(f"creating {len(pods)} pods: GPU pods through the webhook and the extender"):
            for demo_pod in pods:
                _create(core, demo_pod, plane)
        admitted = [p for p in pods if not p.refusal]
        with progress.step("waiting for the extender to place them, the kubelets to admit them through the device "
                           "plugins, and the runtime to start them "
                           + ("under runc with tessera-hook" if oci_runtime else f"(no runc: {runc_missing})")) as step:
            wait_ready(watch.pods_settled(core, cluster, plugins, sched, admitted),
                       "the demo pods ran or were refused", report=step.note, interval_s=0.25)
        occupancy_before = _occupancy(core)
        with progress.step(f"injecting Xid {demo_fault.XID} on a free GPU; watching the plugin, the extender, "
                           "the exporter" + (" and Prometheus" if prom else "") + " react") as step:
            fault = demo_fault.inject_and_watch(cluster, core, sched, plugins, exporters, prom, report=step.note)
        png = Path(getattr(args, "png", None) or DEFAULT_PNG).resolve()
        no_picture = missing_pictures()
        with progress.step(f"drawing GPU occupancy per node to {png}" if not no_picture
                           else f"no occupancy picture ({no_picture})"):
            occupancy = _occupancy(core)
            if not no_picture:
                draw_occupancy(occupancy, png)
        _print_report(cluster, core, gpus, pods, exporters, prom, fault, occupancy_before, occupancy)
        ok = fault is None or fault.all_seen
        print(f"\n{'Done' if ok else 'Done, but a reaction to the fault was not seen'} in "
              f"{progress.elapsed():.1f}s. GPU occupancy per node: {no_picture or png}")
        if args.keep:
            _free_the_faults_pod(core, fault)
            _keep_running(cluster, stop, exporters, prom, plane.keep_notes(cluster))
    return 0 if ok else 1


def _start_prometheus(stack: ExitStack, cluster, exporters, extender_url: str, note):
    from simcluster.prometheus import Prometheus

    jobs = {"tessera-exporter": [e.url.removeprefix("http://") for e in exporters.values()],
            "tessera-extender": [extender_url.removeprefix("http://")]}
    prom = Prometheus(cluster.workdir / "prometheus", jobs, rule_files=[RULES], report=note)
    stack.callback(prom.stop)
    prom.wait_for_targets(report=note)
    return prom


def _bind(core, name: str, node: str) -> None:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    core.create_namespaced_binding(DEMO_NAMESPACE, body, _preload_content=False)


def _create(core, demo_pod: DemoPod, plane: ControlPlane) -> None:
    """Create one pod; one meant for a node goes there as ``plane`` puts it (bound directly, or created with its
    nodeName); note the webhook's refusal where it refuses."""
    try:
        core.create_namespaced_pod(DEMO_NAMESPACE, plane.pod_body(demo_pod), _preload_content=False)
    except kubernetes.client.ApiException as exc:
        demo_pod.refusal = json.loads(exc.body or "{}").get("message", str(exc))
        return
    if demo_pod.node and plane.binds_after_creation:
        _bind(core, demo_pod.body["metadata"]["name"], demo_pod.node)


def _print_report(cluster, core, gpus, pods: list[DemoPod], exporters, prom, fault, occupancy_before,
                  occupancy) -> None:
    def table(headers: list[str], rows: list[list[object]], title: str) -> None:
        print()
        print(render_table(headers, rows, title=title, max_widths=WRAPPED_COLUMNS))

    table(["NODE", "MODE", "GPUS", "STATUS", "ALLOCATABLE (Tessera resources)"], report.node_rows(cluster, core),
          "Nodes (from the API server)")
    table(["NODE", "GPUS", "MODEL", "MiB EACH", "SMs", "NUMA", "NVLINK", "MIG LAYOUT PER GPU"], gpus,
          "GPUs (read through Tessera's NVML layer on each fake node)")
    table(["POD", "ASKS", "NODE", "PHASE", "READY", "GRANT (tessera.io/allocated)", "WHAT HAPPENED"],
          report.pod_rows(core),
          "Pods (GPU pods placed by the extender, allocated by the plugins)")
    refused = [p for p in pods if p.refusal]
    if refused:
        table(["POD", "REFUSED AT CREATION (what kubectl apply shows)"],
              [[p.body["metadata"]["name"], p.refusal] for p in refused], "Refused by the admission webhook")
    print()
    print("Per-GPU occupancy before the fault (tessera inspect):")
    print(render_inspect(occupancy_before))
    table(["NODE", "EXPORTER", "GPUS", "GPU MEMORY USED MiB", "HEALTHY", "SERIES"], report.exporter_rows(exporters),
          "Exporters (scraped once, dcgm-exporter names)")
    if prom is not None:
        table(["WHAT", "VALUE", "DETAIL"], report.prometheus_rows(prom), f"Prometheus ({prom.url})")
    if fault is not None:
        table(["PART", "WHAT IT SHOWS", "BEFORE", "AFTER", "SECONDS AFTER XID"], demo_fault.fault_rows(fault),
              f"Fault: Xid {demo_fault.XID} on {fault.node} GPU {fault.gpu_index} ({fault.uuid})")
        if fault.failed_scheduling:
            print(f"\n{fault.pods_after[0]}: FailedScheduling: {fault.failed_scheduling}")
        print()
        print("Per-GPU occupancy after the fault (tessera inspect):")
        print(render_inspect(occupancy))


def _occupancy(core):
    """``tessera inspect``'s view of the cluster (nodes, GPUs, holders, free, fragmentation)."""
    from tessera_cli.inspect import gather

    return gather(core)


def render_inspect(view) -> str:
    from tessera_cli.inspect_table import render_text

    return render_text(view)


def _free_the_faults_pod(core, fault) -> None:
    """The pod placed after the fault holds every healthy GPU left on its node; a cluster kept for kubectl
    gets them back, so the pods of deploy/examples/ can run there."""
    if fault is None or len(fault.pods_after) < 2:
        return
    name = fault.pods_after[1]
    core.delete_namespaced_pod(name, DEMO_NAMESPACE, _preload_content=False)
    print(f"\nDeleted pod {name}: the GPUs it held on {fault.node} are free for your pods (deploy/examples/).")


def _keep_running(cluster, stop: threading.Event, exporters, prom, notes: list[str]) -> None:
    print("\nThe cluster stays up; kubectl and the kubernetes client reach it with:\n")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    for line in notes:
        print(line)
    for name, exporter in exporters.items():
        print(f"# {name} exporter: {exporter.url}/metrics")
    if prom is not None:
        print(f"# Prometheus: {prom.url}")
    print("\nCtrl-C or SIGTERM stops it.", flush=True)
    while not stop.wait(0.5):
        pass
    print("stopping", file=sys.stderr)
