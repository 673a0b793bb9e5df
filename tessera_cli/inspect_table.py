"""``tessera inspect``'s output: the cluster view as tables (default) or JSON (``-o json``).

    print(render_text(view))           # a summary, a node table, a GPU table with one row per holder
    json.dumps(render_json(view))      # the same facts for scripts
"""

from __future__ import annotations

import argparse
import json
import sys

from tessera_cli.clusterview import STATE_ASSIGNED, VIA_DRA, Allocation, ClusterView, GpuView, Holder, NodeView
from tessera.table import render_table

JSON_VERSION = 1
NODE_HEADERS = ("NODE", "ADDRESS", "MODE", "GPUS OK", "MODEL", "PODS", "CORES ALLOCATED/TOTAL",
                "GiB ALLOCATED/TOTAL", "FREE CORES", "FRAGMENTATION", "NOTE")
GPU_HEADERS = ("NODE", "GPU", "VIA", "MODE", "HEALTH", "HELD BY", "PHASE", "CORE", "GiB", "SHARE", "FREE")
VIA_TEXT = {VIA_DRA: "dra"}   # else "plugin"
DRA_NOTES_SHOWN = 10


def render_json(view: ClusterView) -> dict:
    """The ``-o json`` document: the view's fields with a format version."""
    return {"version": JSON_VERSION, **view.to_dict()}


def _free_text(gpu: GpuView) -> str:
    if not gpu.schedulable:
        return "none (out of scheduling)"
    f = gpu.free
    if gpu.mode == "mps":
        return f"core {f.core_pct}%, {f.memory_gib} GiB" if f.core_pct else "none"
    if gpu.mode == "exclusive":
        return "whole GPU" if f.whole else "none"
    if gpu.mode == "timeslice":
        return f"{f.replicas}/{f.replicas_total} replicas"
    return ", ".join(f"{p} x{n}" for p, n in sorted(f.mig.items())) or "none"


def _health_text(gpu: GpuView) -> str:
    if not gpu.healthy:
        return f"UNHEALTHY: {gpu.reason}"
    return f"closed: {gpu.reason}" if gpu.reason else "ok"


def _of_total(held: float, total: float) -> str:
    """``held/total (percent)``, as gpushare prints allocated of total."""
    percent = f" ({100 * held / total:.0f}%)" if total else ""
    return f"{held:g}/{total:g}{percent}"


def allocation_line(allocation: Allocation) -> str:
    """The cluster's allocated of total in one line (gpushare's "Allocated/Total GPU Memory In Cluster")."""
    return (f"Allocated/total in the cluster: {_of_total(allocation.cores, allocation.cores_total)} GPU cores "
            f"(100 per GPU), {_of_total(allocation.memory_gib, allocation.memory_gib_total)} GiB of GPU memory")


def _share_text(h: Holder) -> str:
    if h.via == VIA_DRA:
        parts = [f"claim {h.claim}" + (f" ({h.request})" if h.request else "")]
        if not h.pod_keys:
            parts.append("not reserved for a pod")
        if h.kind == "mps" and h.core_pct is None:
            parts.append("consumed capacity unknown")
        return "; ".join(parts)
    parts = []
    if h.mig_profile:
        parts.append(f"{h.mig_profile} {h.mig_uuid}")
    if h.kind == "timeslice":
        parts.append(f"{h.replicas} replica{'s' if h.replicas != 1 else ''}")
    if h.kind == "mps-whole":
        parts.append("whole GPU through MPS")
    if h.state == STATE_ASSIGNED:
        parts.append("assigned, not yet allocated")
    return "; ".join(parts)


def _gpu_rows(node: NodeView) -> list[list[object]]:
    rows: list[list[object]] = []
    for g in node.gpus:
        head = [node.name, g.index, VIA_TEXT.get(g.via, "plugin"), g.mode, _health_text(g)]
        holders = g.holders or (None,)
        for i, h in enumerate(holders):
            lead = head if i == 0 else ["", "", "", "", ""]
            free = _free_text(g) if i == 0 else ""
            if h is None:
                rows.append(lead + ["-", "", "", "", "", free])
                continue
            if h.via == VIA_DRA:
                who = ", ".join(h.pod_keys) or "-"
            else:
                who = h.pod_key if h.container == "main" else f"{h.pod_key} ({h.container})"
            core = "" if h.core_pct is None else f"{h.core_pct}%"
            gib = "" if h.memory_gib is None else h.memory_gib
            rows.append(lead + [who, h.phase or "-", core, gib, _share_text(h), free])
    return rows


def _node_row(node: NodeView) -> list[object]:
    address = node.address or "-"
    if node.problem and not node.gpus:
        return [node.name, address, "", "", "", "", "", "", "", "", node.problem]
    modes = ",".join(dict.fromkeys(g.mode for g in node.gpus)) or "-"
    models = ",".join(dict.fromkeys(g.model for g in node.gpus))
    healthy = sum(1 for g in node.gpus if g.healthy)
    free = round(sum(g.free.cores for g in node.gpus if g.schedulable), 2)
    frag = "" if node.fragmentation_cores is None else f"{node.fragmentation_cores:g} of {node.idle_cores:g}"
    note = "; ".join(((node.problem,) if node.problem else ()) + node.notes)
    held = node.allocation
    return [node.name, address, modes, f"{healthy}/{len(node.gpus)}", models, len(node.pods),
            _of_total(held.cores, held.cores_total), _of_total(held.memory_gib, held.memory_gib_total),
            f"{free:g}", frag, note]


def _dra_lines(view: ClusterView) -> list[str]:
    """One line on the DRA GPUs (or why DRA objects could not be read), then notes on DRA objects that
    match no node shown."""
    if view.dra_problem:
        lines = [view.dra_problem]
    else:
        gpus = [g for n in view.nodes for g in n.gpus if g.via == VIA_DRA]
        claims = {(h.namespace, h.claim) for g in gpus for h in g.holders}
        lines = [f"DRA: {len(gpus)} GPU(s) published through the DRA driver, held by {len(claims)} ResourceClaim(s)"]
    notes = view.dra_notes
    lines += [f"  {text}" for text in notes[:DRA_NOTES_SHOWN]]
    if len(notes) > DRA_NOTES_SHOWN:
        lines.append(f"  ... and {len(notes) - DRA_NOTES_SHOWN} more (-o json lists them all)")
    return lines


def _pressure_line(view: ClusterView) -> str:
    """Each GPU model's scarcity pressure as the fragmentation policy charges it (the extender's
    ``tessera_gpu_model_pressure``)."""
    each = ", ".join(f"{model} {value:g}" for model, value in view.model_pressure.items()) or "no GPU models"
    return (f"GPU model pressure (demand that can only use the model / its usable idle cores, 1 = all of it "
            f"wanted; 0 = no pod names it): {each}")


def render_text(view: ClusterView) -> str:
    """The view as the terminal shows it: a summary, then nodes, then GPUs with who holds what."""
    gpus = [g for n in view.nodes for g in n.gpus]
    pods = {p for n in view.nodes for p in n.pods}
    free = ", ".join(f"{mode} {value:g}" for mode, value in sorted(view.free_cores_by_mode.items())) or "none"
    idle = sum(n.idle_cores for n in view.nodes)
    shapes = ", ".join(f"{s.shape} (x{s.weight})" for s in view.shapes) or "none"
    lines = [
        f"Cluster {view.server}: {len(view.nodes)} node(s), {len(gpus)} GPU(s) "
        f"({sum(1 for g in gpus if g.healthy)} healthy), {len(pods)} pod(s) holding GPU shares",
        allocation_line(view.allocation),
        f"Free on schedulable GPUs (cores, 100 per GPU): {free}",
        f"Fragmentation: {view.fragmentation_cores:g} of {idle:g} idle cores (device-plugin MPS and whole GPUs) "
        "no typical pod could use",
        f"  shapes {view.shape_source}: {shapes}",
        _pressure_line(view),
        *_dra_lines(view),
        "",
        render_table(NODE_HEADERS, [_node_row(n) for n in view.nodes], title="Nodes", max_widths={"NOTE": 60}),
    ]
    rows = [row for n in view.nodes for row in _gpu_rows(n)]
    if rows:
        lines += ["", render_table(GPU_HEADERS, rows, title="GPUs (one row per holder)")]
    return "\n".join(lines)


def run_inspect(args: argparse.Namespace) -> int:
    """Entry of ``tessera inspect``: print the view; 1 with one line on stderr when it cannot."""
    from tessera_cli.inspect import InspectError, inspect_cluster
    from extender.placement.shapes import ShapeError
    from tessera.log import configure_logging

    configure_logging("error", stream=sys.stderr)  # stdout is for the view
    try:
        view = inspect_cluster(args.kubeconfig, node=args.node, shapes=args.shape or (), context=args.context)
    except (InspectError, ShapeError) as exc:
        print(f"tessera inspect: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(render_json(view), indent=2))
    else:
        print(render_text(view))
    return 0
