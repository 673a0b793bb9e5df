"""kube-scheduler with Tessera's extender and without it, through the real control plane: pods bound
per second and scheduling latency for GPU pods on light nodes, both in one run, as a ratio.

    .venv/bin/python bench/real_scheduler_bench.py [--nodes 1000] [--pods 1000] [--rounds 1] [--creators 4]
                                                   [--no-backlog] [--no-allocation-marks] [--pin]

A full run (1,000 / 1,000) takes about 6 minutes on this 2-core machine; ``--nodes 100 --pods 100`` under one.

One real cluster (``realcluster.running(kubelets=False)``: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from upstream, Tessera installed from deploy/) and ``nodes`` light nodes: Node objects
created through the API with the capacity, labels and ``tessera.io/gpu-inventory`` annotation a device
plugin would write (simcluster.lightnodes), 8 A100-40GB GPUs each in exclusive mode (``nvidia.com/gpu: 8``),
and no kubelet. Nothing renews their heartbeats, so kube-controller-manager runs with
``--node-monitor-grace-period=1h`` (realcluster's ``extra_flags``): they stay Ready and untainted for the run.

Each phase creates ``pods`` pods asking whole GPUs (1, 2, 4 or 8; the same seeded sequence in every
phase) from ``creators`` processes, as fast as they can, in a namespace of its own, for each of:

- **tessera-scheduler + extender**: the pods name no scheduler; deploy/'s webhook routes them to the
  tessera-scheduler profile, the second kube-scheduler running deploy/'s KubeSchedulerConfiguration
  (filter, prioritize and bind through the extender over HTTPS), as realcluster/install.py starts it.
- **kube-scheduler alone**: the pods name ``kube-scheduler-alone``, a third kube-scheduler with the same
  KubeSchedulerConfiguration less its extenders and leader election, so ``nvidia.com/gpu`` is an extended
  resource that kube-scheduler counts per node and binds itself. Not the control plane's default-scheduler:
  the webhook routes pods naming default-scheduler to tessera-scheduler (routed_schedulers); a pod naming
  another scheduler keeps it. Its client QPS is raised from kube-scheduler's default 50 (its own Binding
  POST per pod would otherwise cap it at 50 pods/s; with the extender, the extender binds). Both phases'
  pods pass the same admission webhook.

Two phases each (the order alternating by round):

- **stream**: the scheduler runs while the pods are created. Latency: from the pod's ADDED event to the
  event that shows it bound (``spec.nodeName``), both seen by one watch in this process (after admission:
  the time a pod waits for its scheduler); p50, p99, max. Throughput: pods bound / (last bound - first
  ADDED). ``created /s`` says how fast the creators went: a stream whose pods/s equals it waited on
  creation, not on its scheduler (the webhook shares the extender's process, so creation slows too).
- **backlog**: the scheduler's process is stopped while the pods are created and started again with the
  same command line; pods/s from its first bind to its last: what it drains when it never waits for a
  pod, the throughput the issue's goal is about.

Between phases the pods are deleted (grace period 0) and the extender is awaited until it sees every
GPU free again.

No device plugin allocates a pod bound to a light node, so the extender's per-shape rule would hold
every later pod of the same size off that node for good. A stand-in process (``--no-allocation-marks``
turns it off) does what the device plugins' ledger writers do once the kubelet has allocated a pod: it
watches pods and writes ``tessera.io/allocated`` (the record of the extender's assignment) on each pod
bound with one, as the device plugin's ServiceAccount, through the webhook. The rule then holds a node
for that round trip, as it does for the kubelet's Allocate in a cluster; pods it turns away retry after
kube-scheduler's back-off (counted under the table: the extender's decisions during the phase).

Where the time goes: each phase's row says how busy this machine's CPUs were from its first bind to its
last (a phase at 100 % is bound by CPU, one well below by waiting; nan where a pod was left unbound),
and a second table gives the CPU milliseconds per pod each process used over the phase (creation
included), from /proc/<pid>/stat.
Everything shares this machine's CPUs; ``--pin`` puts the control plane, the schedulers and this bench
on CPU 0 and Tessera's extender and the allocation stand-in on the others in both phases, as a cluster
gives the extender CPUs of its own and runs the device plugins on the GPU nodes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kubernetes
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realcluster  # noqa: E402
from deviceplugin.apiclient import NodeApi  # noqa: E402
from extender_bench import percentile  # noqa: E402 - bench/, this script's folder
from extender.kubeapi import KubeApi, api_client  # noqa: E402
from realcluster.components import Component, await_ready, https_ok  # noqa: E402
from realcluster.install import find  # noqa: E402
from simcluster.apiserver.serve import light_cluster  # noqa: E402
from simcluster.lightnodes import light_node_object  # noqa: E402
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN  # noqa: E402
from tessera.allocated import AllocatedRecord, encode_allocated  # noqa: E402
from tessera.assignment import read_assignment  # noqa: E402
from tessera.daemonproc import free_port  # noqa: E402
from tessera.kube import WatchExpired, watch_events  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

MODEL, GPUS_PER_NODE = "A100-SXM4-40GB", 8
ALONE = "kube-scheduler-alone"
EXTENDER = "tessera-scheduler + extender"
WHOLE_GPUS = [(70, 1), (20, 2), (8, 4), (2, 8)]   # (weight, GPUs a pod asks)
NODE_GRACE = ["--node-monitor-grace-period=1h"]   # light nodes post no heartbeats
ALONE_QPS = 5000


def gpu_pod(name: str, namespace: str, gpus: int, scheduler: str | None) -> dict:
    """A pod asking ``gpus`` whole GPUs (and 4 CPUs, 16 GiB per GPU), naming ``scheduler`` if given."""
    limits = {"nvidia.com/gpu": str(gpus), "cpu": str(4 * gpus), "memory": f"{16 * gpus}Gi"}
    spec: dict = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "cuda", "resources": {
        "limits": limits, "requests": dict(limits)}}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _create_nodes(kubeconfig: str, bodies: list[dict]) -> None:
    core = kubernetes.client.CoreV1Api(api_client(kubeconfig))
    for body in bodies:
        core.create_node(body, _preload_content=False).data


def create_light_nodes(cluster, count: int, threads: int = 4) -> None:
    """``count`` light nodes created through the API (as the admin), with a fresh Ready heartbeat."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = []
    for spec in light_cluster(count, MODEL, GPUS_PER_NODE, "exclusive", 96, 768).nodes:
        body = light_node_object(spec)
        for condition in body["status"]["conditions"]:
            condition.update(lastHeartbeatTime=now, lastTransitionTime=now)
        bodies.append(body)
    workers = [threading.Thread(target=_create_nodes, args=(str(cluster.kubeconfig), bodies[i::threads]))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def schedulable_nodes(core: kubernetes.client.CoreV1Api) -> int:
    """Nodes Ready and without taints (the not-ready taint TaintNodesByCondition puts on a new node lifted)."""
    doc = orjson.loads(core.list_node(_preload_content=False).data)
    return sum(1 for n in doc["items"] if not n["spec"].get("taints") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])))


def extender_samples(metrics_url: str) -> dict[tuple[str, ...], float]:
    """From the extender's /metrics: whole GPUs free in its view (``("free",)``, exclusive mode), its
    decisions by (verb, outcome) and its seconds answering and calls by verb (``("sum"|"count", verb)``)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, ...], float] = {("free",): 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tessera_cluster_free_gpu_cores" and sample.labels.get("mode") == "exclusive":
                out[("free",)] = sample.value / 100
            elif sample.name == "tessera_extender_decisions_total":
                key = ("decided", sample.labels["verb"], sample.labels["outcome"])
                out[key] = out.get(key, 0) + sample.value
            elif sample.name in ("tessera_extender_request_seconds_sum", "tessera_extender_request_seconds_count"):
                out[(sample.name.rpartition("_")[2], sample.labels["verb"])] = sample.value
    return out


def describe_extender(changed: dict[tuple[str, ...], float]) -> str:
    """One line: the extender's decisions in a phase and its mean time answering each kind of call."""
    decided = [f"{key[1]} {key[2]} {n:.0f}" for key, n in sorted(changed.items()) if key[0] == "decided"]
    mean = [f"{key[1]} {changed.get(('sum', key[1]), 0) / n * 1000:.1f} ms x {n:.0f}"
            for key, n in sorted(changed.items()) if key[0] == "count" and n]
    return "; ".join(filter(None, [", ".join(decided), "mean answer " + ", ".join(mean) if mean else ""]))


def start_scheduler_alone(cluster, logs: Path) -> Component:
    """A kube-scheduler with deploy/'s KubeSchedulerConfiguration less its extenders, one profile named
    ``kube-scheduler-alone``, no leader election, and a client QPS that does not cap its binds."""
    text = find(cluster.tessera.objects, "ConfigMap", "tessera-scheduler-config")["data"]["scheduler-config.yaml"]
    config = yaml.safe_load(text)
    config.pop("extenders", None)
    kubeconfig = cluster.control.kubeconfig_for("kube-scheduler-alone", "system:kube-scheduler")
    config.update(leaderElection={"leaderElect": False}, profiles=[{"schedulerName": ALONE}],
                  clientConnection={"kubeconfig": str(kubeconfig), "qps": ALONE_QPS, "burst": ALONE_QPS})
    path = cluster.workdir / "kube-scheduler-alone.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    scheduler = Component(ALONE, [cluster.binaries["kube-scheduler"], f"--config={path}", "--bind-address=127.0.0.1",
                                  f"--secure-port={port}", "--v=1"], logs / f"{ALONE}.log").start()
    cluster.components.append(scheduler)
    await_ready(scheduler, lambda: https_ok(f"https://127.0.0.1:{port}/healthz", None),
                "kube-scheduler-alone answering /healthz")
    return scheduler


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads it starts later inherit it from their starter)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:   # the thread ended meanwhile
            pass


def mark_allocated(kubeconfig: str, cpus: set[int] | None = None) -> None:
    """Stand-in for the device plugins' ledger writers (no kubelet allocates on a light node): write
    ``tessera.io/allocated`` on each pod bound with an assignment, as the plugin's ServiceAccount."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    api = KubeApi(api_client(kubeconfig))
    plugin = NodeApi(api_client(kubeconfig), "")
    marked: set[str] = set()
    while True:
        _, version = api.list("pods")
        try:
            for event in api.watch("pods", version, lambda _: None, timeout_s=3600):
                _mark(plugin, event.get("object") or {}, marked)
        except WatchExpired:
            continue


def _mark(plugin: NodeApi, pod: dict, marked: set[str]) -> None:
    meta, node = pod.get("metadata") or {}, (pod.get("spec") or {}).get("nodeName")
    annotations = meta.get("annotations") or {}
    if (not node or ANNOTATION_ASSIGNMENT not in annotations or ANNOTATION_ALLOCATED in annotations
            or meta.get("uid") in marked):
        return
    marked.add(meta["uid"])
    mark_pod_allocated(plugin, pod)


def mark_pod_allocated(plugin: NodeApi, pod: dict) -> None:
    """Write ``tessera.io/allocated`` on ``pod`` (bound with an assignment) as the device plugin would once
    the kubelet allocated it; a pod deleted meanwhile is left alone."""
    meta, annotations = pod["metadata"], pod["metadata"].get("annotations") or {}
    node = pod["spec"]["nodeName"]
    doc, _ = read_assignment(annotations[ANNOTATION_ASSIGNMENT])
    try:
        plugin.patch_pod_annotations(meta["namespace"], meta["name"],
                                     {ANNOTATION_ALLOCATED: encode_allocated(AllocatedRecord(node, doc.containers))})
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:   # deleted meanwhile (the phase's pods are cleared): nothing to mark
            raise


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, every thread) each process has used so far, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:   # gone: it used nothing more that we can count
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick   # utime, stime: fields 14 and 15 of stat(5)
    return out


def cpu_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU of this machine so far, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle, iowait
    return sum(fields) - idle, sum(fields)


def create_pods(kubeconfig: str, pods: list[dict], go, times) -> None:
    """One creator process: wait for ``go``, POST its pods one after another, report (start, end)."""
    core = kubernetes.client.CoreV1Api(api_client(kubeconfig))
    go.wait()
    start = time.monotonic()
    for pod in pods:
        core.create_namespaced_pod(pod["metadata"]["namespace"], pod, _preload_content=False).data
    times.put((start, time.monotonic()))


class PhaseWatch(threading.Thread):
    """Watches the phase's namespace: when each pod was first seen and first seen bound (a watch the API
    server ends is resumed from the last resourceVersion)."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str, pods: int) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace, self.pods = core, namespace, pods
        self.added: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.ticks_at_first_bind: tuple[int, int] | None = None
        self.ticks_at_last_bind: tuple[int, int] | None = None
        self.watching, self.done = threading.Event(), threading.Event()

    def run(self) -> None:
        version = self._list()
        while len(self.bound) < self.pods:
            resp = self.core.list_namespaced_pod(self.namespace, watch=True, resource_version=version,
                                                 allow_watch_bookmarks=True, timeout_seconds=600,
                                                 _preload_content=False)
            self.watching.set()
            try:
                for event in watch_events(resp):
                    pod = event.get("object") or {}
                    version = (pod.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self._saw(pod, time.monotonic())
                    if len(self.bound) >= self.pods:
                        break
            except WatchExpired:
                version = self._list()
        self.done.set()

    def _list(self) -> str:
        doc = orjson.loads(self.core.list_namespaced_pod(self.namespace, _preload_content=False).data)
        for pod in doc["items"]:
            self._saw(pod, time.monotonic())
        return doc["metadata"]["resourceVersion"]

    def _saw(self, pod: dict, now: float) -> None:
        name = (pod.get("metadata") or {}).get("name")
        if name:
            self.added.setdefault(name, now)
            if (pod.get("spec") or {}).get("nodeName") and name not in self.bound:
                self.bound[name] = now
                if len(self.bound) == 1:
                    self.ticks_at_first_bind = cpu_ticks()
                if len(self.bound) == self.pods:   # read twice a phase, not once a pod
                    self.ticks_at_last_bind = cpu_ticks()


@dataclass
class Contender:
    """One of the two ways to schedule the pods: the pods' schedulerName and the kube-scheduler serving it."""

    label: str
    scheduler_name: str | None   # None: the pods name none, the webhook routes them to tessera-scheduler
    component: Component

    def restart(self, cluster) -> None:
        """Start its kube-scheduler again with the same command line (after :meth:`Component.stop`)."""
        fresh = Component(self.component.name, self.component.argv, self.component.log_path).start()
        cluster.components[cluster.components.index(self.component)] = fresh
        self.component = fresh


@dataclass
class Phase:
    """One phase's measurements (``backlog``: the pods were created while its kube-scheduler was stopped)."""

    label: str
    backlog: bool
    pods: int
    bound: int
    seconds: float
    created_per_s: float
    latencies_ms: list[float]
    decisions: dict
    cpu: dict[str, float]
    busy: float   # the machine's CPUs busy from the first bind to the last, 0..1
    round: int = 1

    @property
    def rate(self) -> float:
        return self.bound / self.seconds


def process_ids(cluster, extra: dict[str, int]) -> dict[str, int]:
    """The processes whose CPU a phase counts: the control plane's, Tessera's and ``extra``."""
    pids = {c.name: c.proc.pid for c in [*cluster.control.components, *cluster.components]
            if c.proc is not None and c.running()}
    return {**pids, **extra}


def run_phase(cluster, contender: Contender, namespace: str, sizes: list[int], creators: int, timeout_s: float,
              backlog: bool, extra_pids: dict[str, int]) -> Phase:
    """Create the pods from ``creators`` processes and measure until every one is bound (or ``timeout_s``).
    ``backlog``: the contender's kube-scheduler is stopped while they are created and started after."""
    cluster.kubectl("create", "namespace", namespace)
    core = cluster.core_v1()
    cluster.wait_for(lambda: cluster.has_service_account(namespace), what=f"ServiceAccount {namespace}/default")
    before = extender_samples(cluster.tessera.metrics_url)
    pods = [gpu_pod(f"p{i:05d}", namespace, gpus, contender.scheduler_name) for i, gpus in enumerate(sizes)]
    context = multiprocessing.get_context("fork")   # forked before the watch's thread starts
    go, times = context.Event(), context.Queue()
    procs = [context.Process(target=create_pods, args=(str(cluster.kubeconfig), pods[i::creators], go, times))
             for i in range(creators)]
    for proc in procs:
        proc.start()
    if backlog:
        contender.component.stop()
    cpu_before = cpu_seconds(process_ids(cluster, extra_pids))
    watch = PhaseWatch(core, namespace, len(sizes))
    watch.start()
    if not watch.watching.wait(60):
        raise TimeoutError(f"no watch on {namespace} within 60 s")
    go.set()
    spans = [times.get(timeout=timeout_s) for _ in procs]
    for proc in procs:
        proc.join(10)
    if backlog:
        contender.restart(cluster)
    watch.done.wait(timeout_s)
    cpu_after = cpu_seconds(process_ids(cluster, extra_pids))
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cpu_after.items()}
    after = extender_samples(cluster.tessera.metrics_url)
    bound = sorted(watch.bound.items(), key=lambda item: item[1])
    # A backlog's throughput runs from the first bind (the scheduler up, its informers synced) to the last.
    start = bound[0][1] if backlog and bound else min(watch.added.values())
    seconds = bound[-1][1] - start if bound else float("nan")
    latencies = [] if backlog else [(t - watch.added[name]) * 1000 for name, t in bound]
    created = len(pods) / (max(e for _, e in spans) - min(s for s, _ in spans))
    changed = {k: after[k] - before.get(k, 0) for k in after if k != ("free",) and after[k] != before.get(k, 0)}
    first, last = watch.ticks_at_first_bind, watch.ticks_at_last_bind
    busy = (last[0] - first[0]) / (last[1] - first[1]) if first and last and last[1] > first[1] else float("nan")
    return Phase(contender.label, backlog, len(pods), len(bound), seconds, created, latencies, changed, cpu, busy)


def clear_phase(cluster, namespace: str, nodes: int) -> None:
    """Delete the phase's pods (grace period 0: no kubelet would confirm) and wait until they are gone
    and the extender sees every GPU free again."""
    core = cluster.core_v1()
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    cluster.wait_for(lambda: not core.list_namespaced_pod(namespace, limit=1).items, timeout_s=300, interval_s=0.5,
                     what=f"the pods of {namespace} deleted")
    wait_extender_free(cluster, nodes)


def wait_extender_free(cluster, nodes: int) -> None:
    cluster.wait_for(lambda: extender_samples(cluster.tessera.metrics_url)[("free",)] == nodes * GPUS_PER_NODE, timeout_s=300,
                     interval_s=0.5, what=f"the extender seeing {nodes * GPUS_PER_NODE} free GPUs")


def phase_row(phase: Phase) -> list:
    latency = ([f"{percentile(phase.latencies_ms, q):.0f}" for q in (0.5, 0.99)] + [f"{max(phase.latencies_ms):.0f}"]
               if phase.latencies_ms else ["-", "-", "-"])
    return [phase.label, "backlog" if phase.backlog else "stream", phase.pods, phase.bound, f"{phase.seconds:.2f}",
            f"{phase.rate:.1f}", f"{phase.created_per_s:.1f}", *latency, f"{phase.busy * 100:.0f} %"]


def ratio_rows(phases: list[Phase]) -> list[list]:
    """Per round and kind of phase: the extender's throughput as a fraction of kube-scheduler alone's."""
    rows = []
    for i in range(0, len(phases) - 1, 2):
        ext, alone = sorted(phases[i:i + 2], key=lambda ph: ph.label != EXTENDER)
        ratio = ext.rate / alone.rate
        latency = (["%.2f" % (percentile(ext.latencies_ms, q) / percentile(alone.latencies_ms, q)) for q in (0.5, 0.99)]
                   if ext.latencies_ms and alone.latencies_ms else ["-", "-"])
        rows.append([ext.round, "backlog" if ext.backlog else "stream", f"{ratio:.2f}", f"{(1 - ratio) * 100:.0f} %",
                     *latency, "yes" if ratio >= 0.7 else "NO"])
    return rows


def quiet_binaries(program: str):
    """Tessera's logging silenced, and the real tier's binaries; None, said on stderr, where they are missing."""
    configure_logging("warning", "json", stream=open("/dev/null", "w"))  # noqa: SIM115
    try:
        return realcluster.find_binaries()
    except realcluster.BinariesMissing as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000, help="light nodes of 8 GPUs (default 1000)")
    p.add_argument("--pods", type=int, default=1000, help="pods per phase (default 1000)")
    p.add_argument("--rounds", type=int, default=1, help="rounds of every phase, the order alternating (default 1)")
    p.add_argument("--creators", type=int, default=4, help="processes creating the pods (default 4)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-backlog", action="store_true", help="the stream phases only")
    p.add_argument("--no-allocation-marks", action="store_true",
                   help="no stand-in for the device plugins' tessera.io/allocated marks (the per-shape rule then "
                        "holds each node for good after its first pod of a size)")
    p.add_argument("--pin", action="store_true",
                   help="the control plane, the schedulers and this bench on CPU 0, Tessera's extender (and webhook) "
                        "and the allocation stand-in on the other CPUs, in both phases: a deployment gives the "
                        "extender CPUs of its own, and the device plugins run on the GPU nodes")
    args = p.parse_args(argv)
    for name in ("nodes", "pods", "rounds", "creators"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    binaries = quiet_binaries("real_scheduler_bench")
    if binaries is None:
        return 2
    tessera_cpus: set[int] | None = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            p.error("--pin needs 2 CPUs or more")
        os.sched_setaffinity(0, {cpus[0]})   # inherited by every component this process starts
        tessera_cpus = set(cpus[1:])
    rng = random.Random(args.seed)
    sizes = [rng.choices([g for _, g in WHOLE_GPUS], [w for w, _ in WHOLE_GPUS])[0] for _ in range(args.pods)]
    timeout_s = max(300.0, args.pods * 1.0)
    phases: list[Phase] = []
    started = time.monotonic()
    with realcluster.running(binaries=binaries, kubelets=False,
                             extra_flags={"kube-controller-manager": NODE_GRACE}) as cluster:
        contenders = [Contender(EXTENDER, None, cluster.tessera.scheduler),
                      Contender("kube-scheduler alone", ALONE, start_scheduler_alone(cluster, cluster.workdir / "logs"))]
        if tessera_cpus:
            pin_process(cluster.tessera.extender.proc.pid, tessera_cpus)
        create_light_nodes(cluster, args.nodes)
        core = cluster.core_v1()
        cluster.wait_for(lambda: schedulable_nodes(core) == args.nodes, timeout_s=300, interval_s=0.5,
                         what=f"{args.nodes} light nodes Ready and untainted")
        wait_extender_free(cluster, args.nodes)
        marker = None
        if not args.no_allocation_marks:
            plugin = cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN)
            marker = multiprocessing.get_context("fork").Process(target=mark_allocated, args=(str(plugin), tessera_cpus),
                                                                 daemon=True)
            marker.start()
        extra_pids = {"this bench (watch)": os.getpid(), **({"allocation stand-in": marker.pid} if marker else {})}
        try:
            setup_s = time.monotonic() - started
            for round_ in range(args.rounds):
                for backlog in (False,) if args.no_backlog else (False, True):
                    for contender in (contenders if round_ % 2 else contenders[::-1]):
                        namespace = f"{'alone' if contender.scheduler_name else 'tessera'}-{round_}-{int(backlog)}"
                        phases.append(run_phase(cluster, contender, namespace, sizes, args.creators, timeout_s,
                                                backlog, extra_pids))
                        phases[-1].round = round_ + 1
                        clear_phase(cluster, namespace, args.nodes)
            still = schedulable_nodes(core)   # no phase ran on a node the controller had written off
        finally:
            if marker is not None:
                marker.terminate()
                marker.join(5)
    print(render_table(["scheduler", "phase", "pods", "bound", "seconds", "pods/s", "created /s",
                        "latency p50 ms", "p99 ms", "max ms", "CPUs busy"], [phase_row(ph) for ph in phases],
                       title=f"Real kube-scheduler v1.37.2, {args.nodes:,} light nodes x {GPUS_PER_NODE} GPUs, "
                             + ("control plane on CPU 0, Tessera on the rest (--pin), " if args.pin else "") +
                             f"{args.pods:,} whole-GPU pods a phase, {args.creators} creator processes "
                             f"(setup {setup_s:.0f} s; nodes Ready and untainted at the end: {still:,}). Stream: "
                             "created as fast as the creators go, pods/s over the batch, latency from ADDED to "
                             "bound; backlog: created while the scheduler was stopped, pods/s first to last bind. "
                             "CPUs busy: all of this machine's, first to last bind"))
    for ph in phases:
        if ph.decisions:
            print(f"  {ph.label}, {'backlog' if ph.backlog else 'stream'}: {describe_extender(ph.decisions)}")
    print()
    names = sorted({name for ph in phases for name in ph.cpu}, key=lambda n: -max(ph.cpu.get(n, 0) for ph in phases))
    print(render_table(["scheduler", "phase", *names, "all"],
                       [[ph.label, "backlog" if ph.backlog else "stream",
                         *[f"{ph.cpu.get(n, 0) * 1000 / ph.pods:.1f}" for n in names],
                         f"{sum(ph.cpu.values()) * 1000 / ph.pods:.1f}"] for ph in phases],
                       title="CPU milliseconds per pod, by process, over each phase (pods created, scheduled and "
                             f"watched; {os.cpu_count()} CPUs). Creator processes not counted"))
    print()
    print(render_table(["round", "phase", "pods/s ratio (extender / alone)", "throughput cost", "p50 ratio",
                        "p99 ratio", "cost <= 30 %"], ratio_rows(phases),
                       title="With the extender against kube-scheduler alone, same run"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
