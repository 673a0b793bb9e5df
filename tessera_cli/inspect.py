"""``tessera inspect``'s gathering: read nodes and pods from any API server and say, per node and GPU,
the mode, health, who holds which share, what is free, and the fragmentation.

Sources (ARCHITECTURE.md, "The ledger"): the node inventory ``tessera.io/gpu-inventory``; per pod the
device plugin's record ``tessera.io/allocated`` (what the kubelet gave), else the extender's
``tessera.io/assignment`` (placed, not yet allocated). Both are read into the extender's own
``NodeState`` through ``extender.assignments.placement_of``, so free capacity and fragmentation are
computed by the code the extender schedules with (``extender.placement.fragmentation``), and so is each
GPU model's scarcity pressure (``extender.placement.scarcity.model_pressures``, over every node).

GPUs Tessera's DRA driver publishes (ResourceSlices of ``gpu.tessera.io``) are shown beside them, held by
the ResourceClaims kube-scheduler allocated (:mod:`tessera_cli.inspect_dra`); where resource.k8s.io cannot
be read (absent, forbidden) the view says why in one line and shows the device-plugin GPUs alone.
DRA GPUs are outside the extender's capacity model, so they count in free cores, not in fragmentation.

    view = inspect_cluster("/path/to/kubeconfig")         # or a CoreV1Api, or None for the default
    print(render_text(view))                              # tessera_cli.inspect_table
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import kubernetes

from extender.placement.fragmentation import FragmentationModel, idle_cores
from extender.placement.scarcity import model_pressures
from extender.assignments import NodeMismatchError, placement_of
from extender.placement.nodestate import DEFAULT_TIMESLICE_REPLICAS, GpuState, NodeState, StateError
from extender.placement.grants import Placement
from tessera.quantity import QuantityError, cpu_millis, memory_bytes
from tessera.podrequest import KIND_GPU, KIND_MIG, KIND_MPS_WHOLE, KIND_TIMESLICE, RequestError, pod_request
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY, RESOURCE_GPU_SHARED
from tessera.allocated import decode_allocated
from tessera.assignment import Assignment, AssignmentError, read_assignment
from extender.placement.shapes import DEFAULT_SHAPES, describe, learned_shapes, shape_counts
from tessera_cli.inspect_dra import DraGpus, dra_gpus
from tessera_cli.clusterview import (STATE_ALLOCATED, STATE_ASSIGNED, ClusterView, GpuFree, GpuView, Holder,
                                     NodeView, ShapeWeight)
from tessera.inventory import InventoryError, NodeInventory
from tessera.log import get_logger

log = get_logger("inspect")
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds)
NO_INVENTORY = f"no {ANNOTATION_INVENTORY} annotation (no Tessera device plugin has run on this node)"


class InspectError(Exception):
    """Why the cluster could not be read, in one line."""


# -- reaching the API server ------------------------------------------------------------------------


def choose_model(pods: Sequence[dict], given: Sequence[str] = ()) -> tuple[FragmentationModel, str, tuple[ShapeWeight, ...]]:
    """The model to measure with, where its shapes came from, and the shapes as written."""
    if given:
        counts = shape_counts(given)
        source = "given with --shape"
    else:
        counts = learned_shapes(pods)
        source = f"learned from {sum(counts.values())} pod(s) holding GPU shares, as the extender learns them"
        if not counts:
            counts = shape_counts(DEFAULT_SHAPES)
            source = "defaults (no pod in the cluster asks for whole GPUs or MPS shares)"
    model = FragmentationModel(counts.items())
    shapes = tuple(ShapeWeight(describe(s), w) for s, w in model.shapes)
    return model, source, shapes

def connect(kubeconfig: str | os.PathLike | None = None, context: str | None = None) -> kubernetes.client.CoreV1Api:
    """A client from ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, else the in-cluster
    service account; raises InspectError saying which was tried."""
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "")
    if not path:
        default = Path("~/.kube/config").expanduser()
        path = str(default) if default.exists() else ""
    configuration = kubernetes.client.Configuration()
    try:
        if path:
            kubernetes.config.load_kube_config(config_file=path, context=context,
                                               client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            raise InspectError("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config "
                               "(or run in a pod with a service account)")
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"kubeconfig {path}" if path else "in-cluster config"
        raise InspectError(f"cannot load {where}: {_one_line(exc)}") from None
    configuration.retries = 1
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException):
        try:
            return f"{exc.status} {json.loads(exc.body)['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{exc.status} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "object at 0x" in text:  # urllib3: "<HTTPConnection object at 0x..>: Failed to establish ...: refused"
        text = text.split(">: ", 1)[-1]
    return " ".join(text.split()) or type(exc).__name__


def _list(core: kubernetes.client.CoreV1Api, what: str) -> list[dict]:
    call = core.list_node if what == "nodes" else core.list_pod_for_all_namespaces
    try:
        resp = call(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        return json.loads(resp.data).get("items") or []
    except Exception as exc:  # noqa: BLE001 - any failure to read is said in one line
        host = core.api_client.configuration.host
        raise InspectError(f"cannot list {what} from {host}: {_one_line(exc)}") from None


DRA_GROUP, DRA_VERSION = "resource.k8s.io", "v1"


def _dra_problem(plural: str, exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException) and exc.status == 404:
        return f"DRA objects not read: the API server serves no {DRA_GROUP}/{DRA_VERSION} {plural} (404)"
    return f"DRA objects not read: cannot list {plural}.{DRA_GROUP}: {_one_line(exc)}"


def _list_dra(core: kubernetes.client.CoreV1Api) -> tuple[list, list, str]:
    """(ResourceSlices, ResourceClaims of all namespaces, why not all could be read: '' when they were).
    Never raises: without DRA objects inspect shows the device-plugin GPUs alone."""
    objects = kubernetes.client.CustomObjectsApi(core.api_client)
    found: dict[str, list] = {"resourceslices": [], "resourceclaims": []}
    for plural in found:
        try:
            resp = objects.list_cluster_custom_object(DRA_GROUP, DRA_VERSION, plural, _preload_content=False,
                                                      _request_timeout=REQUEST_TIMEOUT)
            items = json.loads(resp.data).get("items")
        except Exception as exc:  # noqa: BLE001 - any failure to read is said in one line
            problem = _dra_problem(plural, exc)
            if plural == "resourceclaims":
                problem += " (DRA GPUs are shown without their holders)"
            return found["resourceslices"], [], problem
        found[plural] = items if isinstance(items, list) else []
    return found["resourceslices"], found["resourceclaims"], ""


def _with_dra(view: NodeView, gpus: list[GpuView], notes: list[str]) -> NodeView:
    """The node's view with its DRA GPUs after its device-plugin ones (a node without the inventory
    annotation but with DRA GPUs has no problem)."""
    if not gpus and not notes:
        return view
    problem = "" if view.problem == NO_INVENTORY and gpus else view.problem
    plugin = {g.uuid for g in view.gpus}
    twice = [f"GPU {g.uuid} is served both by the device plugin and through DRA ({g.device})"
             for g in gpus if g.uuid and g.uuid in plugin]
    return dataclasses.replace(view, gpus=view.gpus + tuple(gpus), problem=problem,
                               notes=view.notes + tuple(twice) + tuple(notes))


# -- the ledger ---------------------------------------------------------------------------------------

def _grant_doc(pod: dict) -> tuple[Assignment | None, str, str]:
    """(document, state, problem) of what a pod holds: the plugin's record first, else the assignment."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    allocated = annotations.get(ANNOTATION_ALLOCATED)
    try:
        if allocated is not None:
            return decode_allocated(allocated).as_assignment(meta.get("uid") or ""), STATE_ALLOCATED, ""
        if ANNOTATION_ASSIGNMENT in annotations:
            return read_assignment(annotations[ANNOTATION_ASSIGNMENT])[0], STATE_ASSIGNED, ""
    except (AssignmentError, ValueError) as exc:
        key = ANNOTATION_ALLOCATED if allocated is not None else ANNOTATION_ASSIGNMENT
        return None, "", f"{key} unreadable: {exc}"
    return None, "", ""


def _replicas(node: dict, inventory: NodeInventory) -> int:
    """Time-slice replicas per GPU, from the node's capacity (the plugin's config), else the default."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    gpus = sum(1 for g in inventory.gpus if g.mode == "timeslice")
    try:
        total = int(capacity.get(RESOURCE_GPU_SHARED, 0))
    except (TypeError, ValueError):
        total = 0
    return total // gpus if gpus and total >= gpus else DEFAULT_TIMESLICE_REPLICAS


def _allocatable(node: dict) -> tuple[int, int]:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    try:
        return cpu_millis(alloc.get("cpu", 0)), memory_bytes(alloc.get("memory", 0))
    except QuantityError:
        return 0, 0


# -- per node -----------------------------------------------------------------------------------------

def _holders(placement: Placement, pod: dict, state: str, inventory: NodeInventory) -> dict[int, list[Holder]]:
    """The placement's grants as holders by GPU index (a container's replicas on one GPU together)."""
    meta = pod.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    slots = {m.uuid: m for g in inventory.gpus for m in g.mig}
    cards = {g.index: g.memory_gib for g in inventory.gpus}
    out: dict[int, list[Holder]] = {}
    for c in placement.containers:
        merged: dict[tuple, Holder] = {}
        for g in c.grants:
            key = (g.gpu_index, g.kind, g.mig_uuid)
            if g.kind == KIND_TIMESLICE and key in merged:
                old = merged[key]
                merged[key] = Holder(namespace, name, c.container, g.kind, state,
                                     replicas=old.replicas + len(g.ts_ids))
                continue
            slot = slots.get(g.mig_uuid)
            if g.kind in (KIND_GPU, KIND_MPS_WHOLE):
                core, gib = 100, cards.get(g.gpu_index)
            elif g.kind == KIND_MIG:
                core, gib = None, round(slot.memory_mib / 1024) if slot else None
            elif g.kind == KIND_TIMESLICE:
                core = gib = None
            else:
                core, gib = g.core, g.memory_gib
            merged[key] = Holder(namespace, name, c.container, g.kind, state, core_pct=core, memory_gib=gib,
                                 mig_uuid=g.mig_uuid, mig_profile=slot.profile if slot else "",
                                 replicas=len(g.ts_ids))
        for (index, _, _), holder in merged.items():
            out.setdefault(index, []).append(holder)
    return out


def _free(g: GpuState) -> GpuFree:
    cores = round(100 * (1 - g.used_fraction), 2)
    if g.mode == "mps":
        return GpuFree(cores, whole=g.core_free == 100 and g.mem_free == g.memory_gib and not g.pods,
                       core_pct=g.core_free, memory_gib=g.mem_free)
    if g.mode == "exclusive":
        return GpuFree(cores, whole=not g.whole)
    if g.mode == "timeslice":
        return GpuFree(cores, whole=g.ts_free == g.ts_total, replicas=g.ts_free, replicas_total=g.ts_total)
    mig: dict[str, int] = {}
    for m in g.mig:
        if m.healthy and not m.holder:
            mig[m.profile] = mig.get(m.profile, 0) + 1
    return GpuFree(cores, whole=not any(m.holder for m in g.mig), mig=mig)


def _node_view(node: dict, pods: list[tuple[dict, Assignment | None, str]],
               model: FragmentationModel) -> tuple[NodeView, NodeState | None]:
    """The node as inspect shows it, and its state as the extender holds it (None: no readable inventory)."""
    meta = node.get("metadata") or {}
    name = meta.get("name", "")
    text = (meta.get("annotations") or {}).get(ANNOTATION_INVENTORY)
    if not text:
        return NodeView(name, (), problem=NO_INVENTORY), None
    try:
        inventory = NodeInventory.from_json(text)
    except InventoryError as exc:
        return NodeView(name, (), problem=f"{ANNOTATION_INVENTORY} unreadable: {exc}"), None
    cpu, mem = _allocatable(node)
    state = NodeState.from_inventory(inventory, cpu, mem, meta.get("labels") or {}, _replicas(node, inventory))
    holders: dict[int, list[Holder]] = {}
    notes: list[str] = []
    for pod, doc, pod_state in pods:
        pmeta = pod.get("metadata") or {}
        key = f"{pmeta.get('namespace', 'default')}/{pmeta.get('name', '')}"
        try:
            request = pod_request(pod)
        except RequestError:
            request = None
        try:
            if doc is not None:
                placement = placement_of(doc, state, key, request)
            else:
                placement = Placement(key, name, (), request.cpu_milli if request else 0,
                                      request.memory_bytes if request else 0)
            state.assume(placement)
        except (NodeMismatchError, StateError) as exc:
            notes.append(f"{key}: {exc}")
            continue
        if doc is not None:
            for index, hs in _holders(placement, pod, pod_state, inventory).items():
                holders.setdefault(index, []).extend(hs)
    gpus = []
    for inv, g in zip(inventory.gpus, state.gpus):
        gpus.append(GpuView(index=inv.index, uuid=inv.uuid, model=inv.model, memory_gib=inv.memory_gib, mode=inv.mode,
                            healthy=inv.health.healthy, reason=g.reason, schedulable=g.open,
                            pending_mode=inv.pending_mode,
                            mig_instances={m.uuid: m.profile for m in inv.mig} if inv.mode == "mig" else {},
                            holders=tuple(holders.get(g.index, ())), free=_free(g)))
    idle = float(idle_cores(state))
    frag = round(model.node_fragment_cores(state), 2) if state.gpus else None
    return NodeView(name, tuple(gpus), notes=tuple(notes), fragmentation_cores=frag, idle_cores=idle), state


# -- the cluster --------------------------------------------------------------------------------------

def _addresses(node: dict) -> dict[str, str]:
    """The node's ``status.addresses`` as type -> address (the first of each type)."""
    found: dict[str, str] = {}
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") and a.get("address"):
            found.setdefault(a["type"], a["address"])
    return found


def _with_phases(view: NodeView, phases: dict[str, str]) -> NodeView:
    """The node's view with each holder's pod phase."""
    def phase(h: Holder) -> str:
        return ",".join(dict.fromkeys(phases.get(k, "absent") for k in h.pod_keys))

    gpus = tuple(dataclasses.replace(g, holders=tuple(dataclasses.replace(h, phase=phase(h)) for h in g.holders))
                 for g in view.gpus)
    return dataclasses.replace(view, gpus=gpus)


def gather(core: kubernetes.client.CoreV1Api, node: str | None = None, shapes: Sequence[str] = ()) -> ClusterView:
    """Read every node (or the one named) and the pods holding GPU shares; raises InspectError when the
    API server cannot be read or the node does not exist, ShapeError for a bad ``shapes`` entry."""
    nodes = _list(core, "nodes")
    slices, claims, dra_problem = _list_dra(core)
    dra: DraGpus = dra_gpus(slices, claims)
    every_pod = _list(core, "pods")
    phases = {f"{(p.get('metadata') or {}).get('namespace', 'default')}/{(p.get('metadata') or {}).get('name', '')}":
              (p.get("status") or {}).get("phase") or "" for p in every_pod}
    pods = [p for p in every_pod if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    by_node: dict[str, list[tuple[dict, Assignment | None, str]]] = {}
    holding = []
    notes: dict[str, list[str]] = {}
    for pod in pods:
        doc, state, problem = _grant_doc(pod)
        bound = (pod.get("spec") or {}).get("nodeName") or ""
        where = bound or (doc.node if doc is not None else "")
        if problem:
            meta = pod.get("metadata") or {}
            notes.setdefault(where, []).append(f"{meta.get('namespace')}/{meta.get('name')}: {problem}")
        if not where:
            continue
        by_node.setdefault(where, []).append((pod, doc, state))
        if doc is not None:
            holding.append(pod)
    model, source, shape_weights = choose_model(holding, shapes)
    names = {(n.get("metadata") or {}).get("name") for n in nodes}
    if node is not None and node not in names:
        raise InspectError(f"no node named {node!r} (the cluster has {len(names)})")
    views = []
    states = []
    for n in sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name", "")):
        name = (n.get("metadata") or {}).get("name", "")
        view, state = _node_view(n, by_node.get(name, []), model)
        if state is not None:
            states.append(state)
        if node is not None and name != node:
            continue  # measured for the pressures, not shown
        if notes.get(name):
            view = dataclasses.replace(view, notes=view.notes + tuple(notes[name]))
        view = _with_dra(view, dra.by_node.get(name, []), dra.notes.get(name, []))
        views.append(dataclasses.replace(_with_phases(view, phases), addresses=_addresses(n)))
    dra_notes = [text for where, texts in dra.notes.items() if where not in names for text in texts]
    dra_notes += [f"{len(gpus)} DRA GPU(s) published for node {where!r}, which the cluster does not have"
                  for where, gpus in dra.by_node.items() if where not in names]
    free: dict[str, float] = {}
    for v in views:
        for g in v.gpus:
            if g.schedulable:
                free[g.mode] = round(free.get(g.mode, 0.0) + g.free.cores, 2)
    total = round(sum(v.fragmentation_cores or 0.0 for v in views), 2)
    log.debug("inspected", nodes=len(views), pods=len(holding))
    return ClusterView(server=core.api_client.configuration.host, nodes=tuple(views), shapes=shape_weights,
                       shape_source=source, fragmentation_cores=total, free_cores_by_mode=free,
                       dra_problem=dra_problem, dra_notes=tuple(dra_notes),
                       model_pressure={p: round(v, 4) for p, v in sorted(model_pressures(model, states).items())})


def inspect_cluster(source: kubernetes.client.CoreV1Api | str | os.PathLike | None = None, *,
                    node: str | None = None, shapes: Sequence[str] = (), context: str | None = None) -> ClusterView:
    """The cluster as ``tessera inspect`` shows it. ``source``: a CoreV1Api, a kubeconfig path, or None
    for ``$KUBECONFIG``, ``~/.kube/config``, then in-cluster. Raises InspectError (one line)."""
    if isinstance(source, kubernetes.client.CoreV1Api):
        return gather(source, node=node, shapes=shapes)
    core = connect(source, context)
    try:
        return gather(core, node=node, shapes=shapes)
    finally:
        core.api_client.close()
