"""The demo's fault: an Xid 79 (GPU fallen off the bus) on a free GPU of a whole-GPU node, and how each
part of Tessera reacts to it, timed from the moment the fake driver reports it.

- device plugin: reports the GPU unhealthy to the kubelet (the node's allocatable ``nvidia.com/gpu``
  drops) and records the reason in the node inventory annotation;
- extender: its cache takes the GPU out of service (cluster free exclusive capacity in its /metrics
  drops), so a pod asking for as many GPUs as were free before stays Pending with the extender's
  reason, and a pod asking for one fewer is placed on the healthy GPUs only;
- exporter: ``tessera_gpu_health`` of that GPU goes to 0 and its Xid counter counts one;
- Prometheus (where installed): scrapes it, and the ``TesseraGPUUnhealthy`` alert becomes pending.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tessera import ANNOTATION_ALLOCATED, ANNOTATION_INVENTORY, RESOURCE_GPU
from tessera_cli.demo_pods import DEMO_NAMESPACE, GPU_COMMAND, pod
from tessera.allocated import decode_allocated
from tessera.fakenvml import FaultInjector
from tessera.inventory import NodeInventory
from simcluster.readiness import Awaited, NotReady, wait_ready

XID = 79
HTTP_HANG_GUARD_S = 60.0  # one scrape; on a busy machine a daemon can take seconds to answer


@dataclass
class Reaction:
    """One part's reaction: what it showed before and after the Xid, and how long it took."""

    part: str
    what: str
    before: str
    after: str
    seconds: float | None  # None: not seen in time


@dataclass
class FaultReport:
    node: str
    gpu_index: int
    uuid: str
    reactions: list[Reaction] = field(default_factory=list)
    pods_after: list[str] = field(default_factory=list)   # names of the pods created after the fault
    failed_scheduling: str = ""                            # the Event that says why the too-large pod waits

    @property
    def all_seen(self) -> bool:
        return all(r.seconds is not None for r in self.reactions)


def _metric(url: str, name: str, labels: dict[str, str]) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=HTTP_HANG_GUARD_S) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def _allocated_gpus(pod) -> list[str]:
    """The GPUs a pod's ``tessera.io/allocated`` record names (none while it has no record)."""
    value = (pod.metadata.annotations or {}).get(ANNOTATION_ALLOCATED)
    if value is None:
        return []
    record = decode_allocated(value)
    return [g for resources in record.containers.values() for grant in resources.values() for g in grant.gpus]


def _held_uuids(core, node: str) -> set[str]:
    held: set[str] = set()
    for p in core.list_namespaced_pod(DEMO_NAMESPACE, field_selector=f"spec.nodeName={node}").items:
        held.update(_allocated_gpus(p))
    return held


def choose_target(core, cluster) -> tuple[str, int, str, int] | None:
    """(node, GPU index, UUID, free GPUs before) of the first whole-GPU node's lowest free GPU."""
    for name, sim in cluster.nodes.items():
        if sim.spec.mode != "exclusive" or sim.spec.gpus < 3:
            continue
        inventory = NodeInventory.from_json(core.read_node(name).metadata.annotations[ANNOTATION_INVENTORY])
        held = _held_uuids(core, name)
        free = [g for g in inventory.gpus if g.uuid not in held and g.health.healthy]
        if len(free) >= 2:
            return name, free[0].index, free[0].uuid, len(free)
    return None


Reacting = Callable[..., Awaited]   # (ready, phase, task=...) -> the reacting daemon, as a wait sees it


class _Clock:
    """Seconds since the Xid; ``until`` waits for a probe's changed value while the reacting daemon lives."""

    def __init__(self, report: Callable[[str], None] | None) -> None:
        self.start = time.monotonic()
        self.report = report

    def until(self, probe, changed, by: Reacting, what: str) -> tuple[object, float | None]:
        """The probe's value once ``changed`` and the seconds since the Xid; the value and None where the
        reacting daemon (``by``) made no progress for minutes. A daemon that died ends the demo (NotReady)."""
        seen: list[object] = [None]

        def ready() -> bool:
            try:
                seen[0] = probe()
            except OSError:  # a daemon too busy to answer this time: asked again
                return False
            return bool(changed(seen[0]))
        awaited = by(ready, None, task=what)
        try:
            wait_ready([awaited], what, report=self.report, interval_s=0.05)
        except NotReady:
            if awaited.proc is not None and awaited.proc.poll() is not None:
                raise
            return seen[0], None
        return seen[0], round(time.monotonic() - self.start, 2)


def inject_and_watch(cluster, core, sched, plugins, exporters, prom=None,
                     report: Callable[[str], None] | None = None) -> FaultReport | None:
    """Inject the Xid and collect each part's reaction, each awaited while the reacting daemon (plugin, extender,
    exporter, Prometheus) lives and progresses; None where the cluster has no whole-GPU node to break."""
    target = choose_target(core, cluster)
    if target is None:
        return None
    node, index, uuid, free_before = target
    extender_url, exporter_url = sched.url, exporters[node].url
    result = FaultReport(node, index, uuid)

    def plugin(ready, phase, task: str) -> Awaited:
        return plugins.awaited(node, ready, phase, task)

    def allocatable() -> int:
        return int((core.read_node(node).status.allocatable or {}).get(RESOURCE_GPU, "0"))

    def inventory_health() -> tuple[bool, str]:
        inv = NodeInventory.from_json(core.read_node(node).metadata.annotations[ANNOTATION_INVENTORY])
        gpu = next(g for g in inv.gpus if g.uuid == uuid)
        return gpu.health.healthy, gpu.health.reason

    def extender_free() -> float:
        return _metric(extender_url, "tessera_cluster_free_gpu_cores", {"mode": "exclusive"}) or 0.0

    def exporter_health() -> float | None:
        return _metric(exporter_url, "tessera_gpu_health", {"UUID": uuid})

    alloc0, free0, health0 = allocatable(), extender_free(), exporter_health()
    FaultInjector(cluster.nodes[node].nvml_description).inject_xid(index, XID)
    clock = _Clock(report)

    alloc1, t = clock.until(allocatable, lambda v: v < alloc0, plugin, f"allocatable {RESOURCE_GPU} on {node} dropped")
    result.reactions.append(Reaction("device plugin",
                                     f"allocatable {RESOURCE_GPU} on {node} (kubelet, from ListAndWatch)",
                                     str(alloc0), str(alloc1), t))
    (ok, reason), t = clock.until(inventory_health, lambda v: not v[0], plugin,
                                  f"GPU {index} of {node} was marked unhealthy in the inventory")
    result.reactions.append(Reaction("device plugin", f"GPU {index} in the node inventory annotation",
                                     "healthy", f"unhealthy: {reason}" if not ok else "healthy", t))
    free1, t = clock.until(extender_free, lambda v: v < free0, sched.awaited, "its free capacity dropped")
    result.reactions.append(Reaction("extender", "cluster free exclusive GPU cores (/metrics, from its cache)",
                                     f"{free0:.0f}", f"{free1:.0f}", t))
    health1, t = clock.until(exporter_health, lambda v: v == 0, exporters[node].awaited,
                             f"tessera_gpu_health of GPU {index} went to 0")
    result.reactions.append(Reaction("exporter", f"tessera_gpu_health{{UUID={uuid[:12]}..}}",
                                     _num(health0), _num(health1), t))
    if prom is not None:
        rows, t = clock.until(lambda: prom.query(f'tessera_gpu_health{{UUID="{uuid}"}} == 0'), bool, prom.awaited,
                              "it scraped the GPU's health 0")
        result.reactions.append(Reaction("prometheus", "query tessera_gpu_health == 0 for that GPU",
                                         "no series", f"{len(rows)} series" if rows else "no series", t))
        alerts, t = clock.until(lambda: [a for a in prom.alerts() if a["labels"].get("alertname") ==
                                         "TesseraGPUUnhealthy" and a["labels"].get("UUID") == uuid], bool,
                                prom.awaited, "the TesseraGPUUnhealthy alert became pending")
        result.reactions.append(Reaction("prometheus", "alert TesseraGPUUnhealthy (for: 1m)", "inactive",
                                         alerts[0]["state"] if alerts else "inactive", t))
    _pods_after_fault(core, node, free_before, result, clock, sched.awaited)
    return result


def _pods_after_fault(core, node: str, free_before: int, report: FaultReport, clock: _Clock, by: Reacting) -> None:
    """A pod asking for every GPU that was free (now one fewer) waits with the scheduler's reason (its own
    fit of the node's allocatable, or the extender's); one asking for one fewer runs on the healthy GPUs only."""
    too_many, fits = f"gpus-{free_before}-after-xid", f"gpus-{free_before - 1}-after-xid"
    for name, count in ((too_many, free_before), (fits, free_before - 1)):
        core.create_namespaced_pod(DEMO_NAMESPACE, pod(name, GPU_COMMAND, {RESOURCE_GPU: str(count)}),
                                   _preload_content=False)
        report.pods_after.append(name)

    def failed_scheduling() -> str:
        events = core.list_namespaced_event(DEMO_NAMESPACE, field_selector=f"involvedObject.name={too_many}").items
        return next((e.message for e in events if e.reason == "FailedScheduling"), "")
    message, t = clock.until(failed_scheduling, bool, by, f"pod {too_many} was found not to fit")
    report.reactions.append(Reaction("scheduling", f"pod {too_many} ({free_before} GPUs, free before the Xid)",
                                     "would fit", "Pending, FailedScheduling (below)" if message else "no event", t))
    report.failed_scheduling = message

    def placed() -> list[str]:
        p = core.read_namespaced_pod(fits, DEMO_NAMESPACE)
        return _allocated_gpus(p)
    gpus, t = clock.until(placed, bool, by, f"pod {fits} was placed and allocated")
    avoided = bool(gpus) and report.uuid not in gpus
    report.reactions.append(Reaction("scheduling", f"pod {fits} ({free_before - 1} GPUs)", "",
                                     (f"placed on {len(gpus)} healthy GPUs, not the failed one" if avoided
                                      else f"placed on {gpus}") if gpus else "not placed",
                                     t if avoided else None))


def _num(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def fault_rows(report: FaultReport) -> list[list[object]]:
    """The table rows: part, what, before, after, seconds after the Xid."""
    return [[r.part, r.what, r.before, r.after, "not seen" if r.seconds is None else f"{r.seconds:.2f}"]
            for r in report.reactions]
