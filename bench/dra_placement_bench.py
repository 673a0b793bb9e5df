"""GPU capacity allocated on a sample of the Alibaba trace through the real kube-scheduler v1.37: Tessera's
extender path against DRA (kube-scheduler's own allocator over ``gpu.tessera.io`` ResourceSlices), on the
same nodes and the same pods, in one run.

    .venv/bin/python bench/dra_placement_bench.py [--nodes 100] [--seed 7] [--pod-list default] [--arrival 100]

One real cluster without kubelets (``realcluster.running(kubelets=False)``, kube-controller-manager with
``--node-monitor-grace-period=1h`` since light nodes post no heartbeats). ``--nodes`` nodes are drawn
(seeded) from the trace's node list, every GPU MPS-capable, GPU models and memory as simcluster.trace maps
them; they are created three times, once per arm, as light Node objects (simcluster.lightnodes) named
``extender-``, ``dra-`` and ``drascored-<trace name>``, with their own label ``tessera.io/bench-arm``:

- **extender**: the device plugin's inventory annotation and allocatable (``nvidia.com/mps-core`` 100 per
  GPU, ``nvidia.com/mps-memory`` its GiB). Pods ask ``nvidia.com/mps-core`` and ``nvidia.com/mps-memory``
  as simcluster.trace turns a task into a request: a share is ``ceil(gpu_milli / 10)`` cores, whole GPUs
  are cores in hundreds. The webhook routes them to tessera-scheduler: filter, prioritize (the
  ``fragmentation`` policy, deploy/'s default) and bind through tessera-extender.
- **DRA**: no Tessera allocatable and no inventory, label ``tessera.io/dra-driver=true``, one
  ``gpu.tessera.io`` ResourceSlice per node built as the driver builds it (draplugin.devices
  ``device_entry`` in mode ``mps``: consumable ``cores`` 1..100 and ``memory`` GiB;
  draplugin.slices ``wanted_slice``). Each pod names a ResourceClaimTemplate of class
  ``mps.gpu.tessera.io``: a share asks ``capacity.requests`` cores and memory, whole GPUs ask ``count``
  devices with no capacity (the device's default: all of it). The pods name no Tessera resource, so the
  control plane's default kube-scheduler places them (their namespace is not labelled
  ``tessera.io/dra-scoring=on``, so the webhook leaves them there): its DRA allocator picks devices, its
  default scoring picks nodes.
- **DRA + Tessera's node scores** (``drascored``): the same nodes and claims in a namespace labelled
  ``tessera.io/dra-scoring=on`` (the extender runs with ``--dra-scoring``), so the webhook routes them to tessera-scheduler: its DRA allocator picks devices and tessera-extender's
  ``prioritize-dra`` scores the nodes by the fragmentation policy (extender.drascoring).

Memory of a share is the same in both arms: ``core/100`` of the smallest card in the sample (what the
webhook completes), written in the pod. Tasks are drawn from the pod list with replacement (seeded) until
the GPU they ask reaches ``--arrival`` % of the sample's GPUs, no departures (the trace README's method);
CPU-only tasks are created too (the default scheduler places them, in both arms) since they take the CPU
and memory that decide where GPU tasks fit. Pods are created one at a time (``--wave`` at a time), each
awaited until it is bound or kube-scheduler marks it unschedulable (PodScheduled=False, reason
Unschedulable); an unschedulable pod is deleted (the replay's drop) so it does not take capacity later.
On the extender arm a stand-in writes the device plugin's ``tessera.io/allocated`` mark on each bound pod
before the next one (no kubelet allocates on a light node; without it the extender's per-shape rule
would hold the node).

Capacity allocated is read back from what the schedulers recorded, not from the asks: the extender's
signed assignments and the DRA claims' allocation results (``consumedCapacity.cores``), per GPU, each GPU
checked to hold no more than 100 cores; and it is checked against the sum of what the bound pods asked.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import kubernetes
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realcluster  # noqa: E402
from deviceplugin.apiclient import NodeApi  # noqa: E402
from draplugin.devices import PublishedGpu, device_entry  # noqa: E402
from draplugin.slices import wanted_slice  # noqa: E402
from extender.dranodes import LABEL_DRA_DRIVER  # noqa: E402
from extender.kubeapi import api_client  # noqa: E402
from real_scheduler_bench import NODE_GRACE, mark_pod_allocated, quiet_binaries  # noqa: E402 - bench/, this script's folder
from simcluster.cluster import NodeSpec, load_trace_nodes  # noqa: E402
from simcluster.lightnodes import light_inventory, light_node_object  # noqa: E402
from simcluster.replay import replay  # noqa: E402
from simcluster.trace import (  # noqa: E402
    NODE_LIST, POD_LISTS, TraceTask, default_trace_dir, load_nodes, load_tasks, workload_model,
)
from tessera import (  # noqa: E402
    ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY, NAMESPACE, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY,
    SERVICE_ACCOUNT_DEVICE_PLUGIN,
)
from tessera.assignment import read_assignment  # noqa: E402
from tessera.dradevices import DRIVER_NAME, MODE_MPS  # noqa: E402
from tessera.gpu import GpuInfo  # noqa: E402
from tessera.kube import watch_events  # noqa: E402
from tessera.podrequest import KIND_MPS  # noqa: E402
from tessera.table import render_table  # noqa: E402

GROUP, VERSION = "resource.k8s.io", "v1"
MPS_CLASS = "mps.gpu.tessera.io"
LABEL_ARM = "tessera.io/bench-arm"
LABEL_PRODUCT = "nvidia.com/gpu.product"
EXTENDER, DRA, DRA_SCORED = "extender", "dra", "drascored"
DRA_ARMS = (DRA, DRA_SCORED)
ARM_TITLES = {EXTENDER: "tessera-scheduler + extender", DRA: "kube-scheduler DRA allocator",
              DRA_SCORED: "DRA allocator + Tessera node scores"}
LABEL_DRA_SCORING = "tessera.io/dra-scoring"   # "on" on a namespace: the webhook routes its DRA pods to Tessera
DRIVER_VERSION = "550.54.15"
RETRY_MARK = "waiting for an allocation"   # the extender's per-shape rule: kube-scheduler retries it


@dataclass(frozen=True)
class Ask:
    """One trace task as both arms ask it: whole GPUs, or a share of cores and GiB of one GPU."""

    name: str
    cpu_milli: int
    memory_mib: int
    whole: int = 0           # whole GPUs
    core: int = 0            # a share: percent of one GPU
    memory_gib: int = 0      # a share: GiB of that GPU
    models: tuple[str, ...] = ()

    @property
    def gpus(self) -> float:
        """The GPU capacity asked, in GPUs."""
        return self.whole + self.core / 100

    def shape(self) -> str:
        """A DNS-label name for its claim template (one per shape)."""
        return f"whole-{self.whole}" if self.whole else f"share-{self.core}-{self.memory_gib}"


def ask_of(task: TraceTask, name: str, smallest_gib: int) -> Ask:
    """``task`` (simcluster.trace's request) as an Ask; a share's memory is its core/100 of ``smallest_gib``."""
    req = task.request
    models = tuple(sorted(set().union(*[a or () for a, _ in req.models.terms]))) if req.models else ()
    base = Ask(name, req.cpu_milli, req.memory_bytes >> 20, models=models)
    if not req.asks:
        return base
    ask = req.asks[0]
    if ask.kind == KIND_MPS and ask.core < 100:
        return replace(base, core=ask.core, memory_gib=ask.memory_on(smallest_gib))
    return replace(base, whole=ask.cores // 100)


def sample_nodes(trace_dir: Path, count: int, seed: int) -> list[NodeSpec]:
    """``count`` nodes of the trace's list, drawn without replacement (seeded), in the list's order."""
    nodes = list(load_trace_nodes(trace_dir / NODE_LIST, mode="mps").nodes)
    if count > len(nodes):
        raise ValueError(f"the trace has {len(nodes)} GPU nodes, fewer than {count}")
    return sorted(random.Random(seed).sample(nodes, count), key=lambda n: n.name)


def arrivals(tasks: list[TraceTask], seed: int, gpus: int, arrival: float) -> list[TraceTask]:
    """Tasks drawn with replacement (seeded) until the GPU they ask reaches ``arrival`` % of ``gpus``."""
    rng, out, asked = random.Random(seed), [], 0
    while asked * 100 < arrival * gpus * 100:
        task = tasks[rng.randrange(len(tasks))]
        out.append(task)
        asked += task.gpu_cores
    return out


def asks_for(nodes: list[NodeSpec], tasks: list[TraceTask]) -> list[Ask]:
    smallest = min(n.gpu_memory_gib or 16 for n in nodes)
    return [ask_of(t, f"p{i:04d}-{t.name}", smallest) for i, t in enumerate(tasks)]


# -- the nodes of each arm -------------------------------------------------------------------------


def arm_node(spec: NodeSpec, arm: str) -> dict:
    """The light Node object of ``spec`` in ``arm``: a device-plugin node (extender) or a DRA node."""
    body = light_node_object(replace(spec, name=f"{arm}-{spec.name}", labels={**spec.labels, LABEL_ARM: arm}))
    body["metadata"]["labels"]["kubernetes.io/hostname"] = body["metadata"]["name"]
    if arm in DRA_ARMS:
        body["metadata"]["annotations"].pop(ANNOTATION_INVENTORY)
        body["metadata"]["labels"][LABEL_DRA_DRIVER] = "true"
        for part in ("capacity", "allocatable"):
            body["status"][part] = {k: v for k, v in body["status"][part].items() if not k.startswith("nvidia.com/")}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for condition in body["status"]["conditions"]:
        condition.update(lastHeartbeatTime=now, lastTransitionTime=now)
    return body


def node_slice(spec: NodeSpec, node: dict) -> dict:
    """The ``gpu.tessera.io`` ResourceSlice the driver would publish for ``spec`` on ``node``: every GPU
    in mode mps, identities as the light node's inventory gives them."""
    inventory = light_inventory(spec)
    devices = [device_entry(PublishedGpu(f"gpu-{g.index}", GpuInfo(
        g.index, g.uuid, g.model, minor_number=g.index, memory_total_mib=g.memory_mib, sm_count=g.sm_count or None,
        numa_node=g.numa_node), MODE_MPS), DRIVER_VERSION) for g in inventory.gpus]
    return wanted_slice(node, DRIVER_NAME, devices, 1)


def create_nodes(cluster, specs: list[NodeSpec], arm: str) -> None:
    core = cluster.core_v1()
    objects = kubernetes.client.CustomObjectsApi(cluster.client())
    for spec in specs:
        node = orjson.loads(core.create_node(arm_node(spec, arm), _preload_content=False).data)
        if arm in DRA_ARMS:
            objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", node_slice(spec, node))


def ready_nodes(core, arm: str) -> int:
    doc = orjson.loads(core.list_node(label_selector=f"{LABEL_ARM}={arm}", _preload_content=False).data)
    return sum(1 for n in doc["items"] if not n["spec"].get("taints") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])))


# -- the pods of each arm --------------------------------------------------------------------------


def claim_template(ask: Ask, namespace: str) -> dict:
    """The ResourceClaimTemplate of ``ask``'s shape: whole GPUs as a count, a share as capacity."""
    exactly: dict = {"deviceClassName": MPS_CLASS}
    if ask.whole:
        exactly["count"] = ask.whole
    else:
        exactly["capacity"] = {"requests": {"cores": str(ask.core), "memory": f"{ask.memory_gib}Gi"}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceClaimTemplate",
            "metadata": {"name": ask.shape(), "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}}}}


def arm_pod(ask: Ask, arm: str, namespace: str) -> dict:
    """``ask`` as a pod of ``arm``: Tessera's MPS resources (extender) or a claim from its template (DRA
    arms); kept on the arm's nodes, and on its GPU models where the task names some."""
    resources = {"cpu": f"{ask.cpu_milli}m", "memory": f"{ask.memory_mib}Mi"}
    container: dict = {"name": "main", "image": "cuda", "resources": {"requests": dict(resources)}}
    spec: dict = {"restartPolicy": "Never", "nodeSelector": {LABEL_ARM: arm}, "containers": [container]}
    if ask.gpus and arm == EXTENDER:
        core, gib = (100 * ask.whole, None) if ask.whole else (ask.core, ask.memory_gib)
        limits = {RESOURCE_MPS_CORE: str(core), **({RESOURCE_MPS_MEMORY: str(gib)} if gib else {})}
        container["resources"] = {"requests": {**resources, **limits}, "limits": limits}
    elif ask.gpus:
        spec["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": ask.shape()}]
        container["resources"]["claims"] = [{"name": "gpu"}]
    if ask.models:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": LABEL_PRODUCT, "operator": "In", "values": list(ask.models)}]}]}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ask.name, "namespace": namespace}, "spec": spec}


class Decisions(threading.Thread):
    """Watches a namespace's pods: which are bound (to which node) and which kube-scheduler marked
    unschedulable (with its message)."""

    def __init__(self, core, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.bound: dict[str, dict] = {}
        self.unschedulable: dict[str, str] = {}
        self.changed = threading.Condition()
        self.watching = threading.Event()
        self._stopping = threading.Event()
        self._response = None

    def run(self) -> None:
        version = self._list()
        while not self._stopping.is_set():
            try:
                self._response = self.core.list_namespaced_pod(
                    self.namespace, watch=True, resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=60, _preload_content=False)
                self.watching.set()
                for event in watch_events(self._response):
                    pod = event.get("object") or {}
                    version = (pod.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._saw(pod)
            except Exception:  # noqa: BLE001 - expired or cut off: list again, unless stopped
                if self._stopping.is_set():
                    return
                version = self._list()

    def stop(self) -> None:
        self._stopping.set()
        if self._response is not None:
            self._response.close()
        self.join(10)

    def _list(self) -> str:
        doc = orjson.loads(self.core.list_namespaced_pod(self.namespace, _preload_content=False).data)
        for pod in doc["items"]:
            self._saw(pod)
        return doc["metadata"]["resourceVersion"]

    def _saw(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        condition = next((c for c in (pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "PodScheduled"), {})
        with self.changed:
            if pod["spec"].get("nodeName"):
                self.bound[name] = pod
                self.unschedulable.pop(name, None)
            elif condition.get("status") == "False" and condition.get("reason") == "Unschedulable":
                self.unschedulable[name] = condition.get("message", "")
            self.changed.notify_all()

    def wait(self, names: list[str], timeout_s: float) -> None:
        """Until every pod of ``names`` is bound or finally unschedulable (not the extender's retry)."""
        deadline = time.monotonic() + timeout_s

        def decided(name: str) -> bool:
            return name in self.bound or (name in self.unschedulable and RETRY_MARK not in self.unschedulable[name])

        with self.changed:
            while not all(decided(n) for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pods undecided after {timeout_s:.0f} s: "
                                       f"{[(n, self.unschedulable.get(n, 'no condition')) for n in names if not decided(n)][:3]}")
                self.changed.wait(min(left, 1.0))


# -- one arm ---------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    """What one arm placed."""

    arm: str
    nodes: int
    gpus: int
    pods: int
    bound: int = 0
    gpu_pods_bound: int = 0
    dropped: int = 0
    asked_gpus: float = 0.0          # sum of the bound pods' asks, in GPUs
    allocated_gpus: float = 0.0      # read back from the assignments or the claims
    per_gpu_cores: dict[str, int] = field(default_factory=dict)   # "<node>/<gpu>" -> cores held
    seconds: float = 0.0
    dropped_by_kind: Counter = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)   # kind of pod dropped -> kube-scheduler's last message
    pods_by_node: dict[str, list[str]] = field(default_factory=dict)
    claims: list[dict] = field(default_factory=list)
    schedulers: Counter = field(default_factory=Counter)   # schedulerName -> bound GPU pods

    @property
    def allocated_share(self) -> float:
        return self.allocated_gpus / self.gpus

    @property
    def overcommitted(self) -> list[str]:
        return [gpu for gpu, cores in self.per_gpu_cores.items() if cores > 100]


def run_arm(cluster, arm: str, specs: list[NodeSpec], asks: list[Ask], wave: int = 1,
            timeout_s: float = 120.0, progress=None) -> ArmResult:
    """Create ``specs`` as ``arm``'s nodes and ``asks`` as its pods, ``wave`` at a time, each awaited until
    bound or unschedulable (then deleted); what the scheduler allocated, read back."""
    namespace = f"bench-{arm}"
    core = cluster.core_v1()
    create_nodes(cluster, specs, arm)
    cluster.wait_for(lambda: ready_nodes(core, arm) == len(specs), timeout_s=120, interval_s=0.5,
                     what=f"{len(specs)} {arm} nodes Ready and untainted")
    cluster.kubectl("create", "namespace", namespace)
    if arm == DRA_SCORED:
        cluster.kubectl("label", "namespace", namespace, f"{LABEL_DRA_SCORING}=on")
    cluster.wait_for(lambda: cluster.has_service_account(namespace), what=f"ServiceAccount {namespace}/default")
    if arm in DRA_ARMS:
        objects = kubernetes.client.CustomObjectsApi(cluster.client())
        for ask in {a.shape(): a for a in asks if a.gpus}.values():
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaimtemplates",
                                                    claim_template(ask, namespace))
    plugin = NodeApi(api_client(str(cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN))), "")
    result = ArmResult(arm, len(specs), sum(s.gpus for s in specs), len(asks))
    by_name = {a.name: a for a in asks}
    decisions = Decisions(core, namespace)
    decisions.start()
    if not decisions.watching.wait(60):
        raise TimeoutError(f"no watch on {namespace} within 60 s")
    started = time.monotonic()
    marked: set[str] = set()
    for first in range(0, len(asks), wave):
        batch = asks[first:first + wave]
        for ask in batch:
            core.create_namespaced_pod(namespace, arm_pod(ask, arm, namespace), _preload_content=False).data
        decisions.wait([a.name for a in batch], timeout_s)
        for ask in batch:
            pod = decisions.bound.get(ask.name)
            if pod is None:
                core.delete_namespaced_pod(ask.name, namespace, grace_period_seconds=0)
                result.dropped += 1
                kind = "cpu-only" if not ask.gpus else "whole" if ask.whole else "share"
                result.dropped_by_kind[kind] += 1
                result.reasons[kind] = f"{ask.name}: {decisions.unschedulable.get(ask.name, '')}"
            elif arm == EXTENDER and ANNOTATION_ASSIGNMENT in (pod["metadata"].get("annotations") or {}) \
                    and ask.name not in marked:
                marked.add(ask.name)
                mark_pod_allocated(plugin, pod)
        if progress and (first // wave) % max(1, 50 // wave) == 0:
            progress(f"{arm}: {first + len(batch)}/{len(asks)} pods, {len(decisions.bound)} bound, "
                     f"{time.monotonic() - started:.0f} s")
    result.seconds = time.monotonic() - started
    decisions.stop()
    read_back(cluster, result, namespace, by_name)
    return result


def read_back(cluster, result: ArmResult, namespace: str, asks: dict[str, Ask]) -> None:
    """Fill ``result`` from the API server: the bound pods, what they asked, and what the scheduler
    recorded for each GPU (the extender's assignments, or the DRA claims' allocations)."""
    pods = orjson.loads(cluster.core_v1().list_namespaced_pod(namespace, _preload_content=False).data)["items"]
    bound = [p for p in pods if p["spec"].get("nodeName")]
    result.bound = len(bound)
    result.gpu_pods_bound = sum(1 for p in bound if asks[p["metadata"]["name"]].gpus)
    result.asked_gpus = sum(asks[p["metadata"]["name"]].gpus for p in bound)
    for p in bound:
        result.pods_by_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
        if asks[p["metadata"]["name"]].gpus:
            result.schedulers[p["spec"].get("schedulerName", "")] += 1
    held: Counter = Counter()
    if result.arm == EXTENDER:
        for p in bound:
            text = (p["metadata"].get("annotations") or {}).get(ANNOTATION_ASSIGNMENT)
            if not text:
                continue
            doc, _ = read_assignment(text)
            for grants in doc.containers.values():
                grant = grants.get(RESOURCE_MPS_CORE)
                if grant is None:
                    continue
                for gpu in grant.gpus:
                    held[f"{doc.node}/{gpu}"] += 100 if len(grant.gpus) > 1 else grant.core
    else:
        objects = kubernetes.client.CustomObjectsApi(cluster.client())
        claims = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaims")["items"]
        result.claims = [c for c in claims if (c.get("status") or {}).get("allocation")]
        for claim in result.claims:
            for r in claim["status"]["allocation"]["devices"]["results"]:
                held[f"{r['pool']}/{r['device']}"] += int((r.get("consumedCapacity") or {}).get("cores", "100"))
    result.per_gpu_cores = dict(held)
    result.allocated_gpus = sum(held.values()) / 100


# -- the run ---------------------------------------------------------------------------------------


def find_trace_dir() -> Path:
    """simcluster.trace's folder, or the shared one two levels up (a git worktree sits a level deeper)."""
    here = default_trace_dir()
    deeper = Path(__file__).resolve().parents[3] / "shared" / "traces" / here.name
    return here if (here / NODE_LIST).is_file() or not (deeper / NODE_LIST).is_file() else deeper


def in_process_share(trace_dir: Path, specs: list[NodeSpec], pod_list: str, seed: int, arrival: float) -> float:
    """GPU capacity allocated (%) when the same tasks (the same seeded draws) go through the extender's own
    placement code in process on the same nodes (simcluster.replay, fragmentation policy): a reference."""
    names = {s.name for s in specs}
    tasks = load_tasks(trace_dir, pod_list)
    nodes = [n for n in load_nodes(trace_dir) if n.name in names]
    return replay(nodes, tasks, "fragmentation", seed, [arrival], workload_model(tasks)).at(arrival).allocated


def report(results: list[ArmResult], specs: list[NodeSpec], asks: list[Ask], args, setup_s: float,
           reference: float) -> str:
    gpus = sum(s.gpus for s in specs)
    models = ", ".join(f"{m} {n}" for m, n in Counter(s.model for s in specs).most_common())
    rows = [[ARM_TITLES[r.arm], r.pods, r.bound, r.gpu_pods_bound, r.dropped,
             ", ".join(f"{k} {n}" for k, n in sorted(r.dropped_by_kind.items())) or "-",
             f"{r.allocated_gpus:.2f}", f"{r.allocated_share * 100:.2f} %",
             "yes" if abs(r.allocated_gpus - r.asked_gpus) < 1e-6 and not r.overcommitted else "NO",
             f"{r.seconds:.0f}", f"{r.pods / r.seconds:.1f}"] for r in results]
    shares = sum(1 for a in asks if a.core)
    whole = sum(1 for a in asks if a.whole)
    title = (f"Real kube-scheduler v1.37, {args.pod_list} pod list, {len(specs)} trace nodes (seed {args.seed}; "
             f"{gpus} GPUs: {models}), arrival {args.arrival:g} %: {len(asks)} pods ({shares} shares, {whole} whole-GPU, "
             f"{len(asks) - shares - whole} CPU-only), created {args.wave} at a time, each awaited (setup {setup_s:.0f} s)")
    table = render_table(["arm", "pods", "bound", "GPU pods bound", "unschedulable (deleted)", "by kind",
                          "GPUs allocated", "of capacity", "records = asks", "seconds", "pods/s"], rows, title=title)
    ext, dra, scored = (next(r for r in results if r.arm == a) for a in (EXTENDER, DRA, DRA_SCORED))
    return (f"{table}\n\nDRA / extender, GPU capacity allocated: {dra.allocated_gpus:.2f} / {ext.allocated_gpus:.2f} "
            f"= {dra.allocated_gpus / ext.allocated_gpus:.3f}\n"
            f"DRA with Tessera's node scores / DRA: {scored.allocated_gpus:.2f} / {dra.allocated_gpus:.2f} "
            f"= {scored.allocated_gpus / dra.allocated_gpus:.3f}; / extender: "
            f"{scored.allocated_gpus / ext.allocated_gpus:.3f}\n"
            f"Reference, the same tasks and nodes through the extender's placement code in process (simcluster.replay, "
            f"fragmentation policy, no kube-scheduler; a share's memory proportional to its card, typical shapes "
            f"from the whole list): {reference:.2f} % of capacity\n\n"
            "Equal in both arms: the nodes (names prefixed, CPU, memory, GPU models, GiB), every GPU MPS-capable, "
            "the pods in the same order with the same CPU, memory, GPU model affinity, cores and share memory "
            "(core/100 of the sample's smallest card), one pod at a time, unschedulable pods dropped.\n"
            "Different: extender arm: pods ask nvidia.com/mps-core/mps-memory, tessera-scheduler filters by node "
            "totals then tessera-extender filters, scores (fragmentation policy) and picks the GPUs. DRA arm: "
            "pods carry a claim of class mps.gpu.tessera.io (whole GPUs: count n, all of each device), the default "
            "kube-scheduler's DRA allocator picks devices in slice order and its default scoring (NodeResourcesFit "
            "LeastAllocated on CPU and memory, ...) picks the node; no extender is asked (their namespace is not "
            "labelled tessera.io/dra-scoring=on). DRA + scores arm: the same claims, routed by the webhook to tessera-scheduler, "
            "whose DRA allocator picks devices while tessera-extender's prioritize-dra scores the nodes (fragmentation "
            "policy over the slices and allocated claims it watches).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100, help="trace nodes drawn (default 100)")
    p.add_argument("--seed", type=int, default=7, help="seed of the node sample and the task draws (default 7)")
    p.add_argument("--pod-list", choices=POD_LISTS, default="default")
    p.add_argument("--arrival", type=float, default=100.0, help="arrived GPU request, %% of capacity (default 100)")
    p.add_argument("--wave", type=int, default=1, help="pods created at a time, then awaited (default 1)")
    p.add_argument("--trace-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.nodes < 1 or args.wave < 1 or args.arrival <= 0:
        p.error("--nodes and --wave must be at least 1, --arrival above 0")
    binaries = quiet_binaries("dra_placement_bench")
    if binaries is None:
        return 2
    trace_dir = args.trace_dir or find_trace_dir()
    specs = sample_nodes(trace_dir, args.nodes, args.seed)
    tasks = arrivals(load_tasks(trace_dir, args.pod_list), args.seed, sum(s.gpus for s in specs), args.arrival)
    asks = asks_for(specs, tasks)
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    with realcluster.running(binaries=binaries, kubelets=False, extender_flags=("--dra-scoring",),
                             extra_flags={"kube-controller-manager": NODE_GRACE}) as cluster:
        setup_s = time.monotonic() - started
        results = [run_arm(cluster, arm, specs, asks, args.wave, progress=progress)
                   for arm in (EXTENDER, DRA, DRA_SCORED)]
    reference = in_process_share(trace_dir, specs, args.pod_list, args.seed, args.arrival)
    print(report(results, specs, asks, args, setup_s, reference))
    for r in results:
        for kind, reason in sorted(r.reasons.items()):
            print(f"  {r.arm}, last {kind} pod found unschedulable: {reason}")
        if r.overcommitted or abs(r.allocated_gpus - r.asked_gpus) > 1e-6:
            print(f"  {r.arm}: records {r.allocated_gpus:.2f} GPUs, asks of bound pods {r.asked_gpus:.2f}; "
                  f"GPUs over 100 cores: {r.overcommitted[:5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
