"""The tables ``tessera demo`` prints: nodes, GPUs as the NVML layer reads them, pods with their grants,
and what each exporter serves. Each function reads the running cluster; none changes it."""

from __future__ import annotations

import urllib.request

from tessera import ANNOTATION_ALLOCATED
from tessera.allocated import decode_allocated
from tessera_cli.demo_pods import DEMO_NAMESPACE
from tessera.table import shorten

UUID_SHOWN = 12  # characters of a GPU UUID the pods table shows ("GPU-" and 8 hex digits), then '…'
HTTP_HANG_GUARD_S = 60.0  # one scrape; on a busy machine a daemon can take seconds to answer


def node_rows(cluster, core) -> list[list[object]]:
    """One row per Node: mode, GPUs, Ready, the Tessera resources the kubelet reports allocatable."""
    rows = []
    for node in core.list_node().items:
        spec = cluster.nodes[node.metadata.name].spec
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown")
        extended = {k: v for k, v in (node.status.allocatable or {}).items() if "/" in k}
        rows.append([node.metadata.name, spec.mode, f"{spec.gpus}x {spec.model}", "Ready" if ready == "True" else ready,
                     ", ".join(f"{k}={v}" for k, v in sorted(extended.items())) or "(no device plugin yet)"])
    return rows


def gpu_rows(cluster) -> list[list[object]]:
    """One row per node: what the NVML layer read of its GPUs."""
    from tessera_cli.inventory_table import read_node

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


def pod_rows(core) -> list[list[object]]:
    """One row per demo pod: what it asks, where it runs, its phase and ready containers, its grant, and its
    last Event."""
    rows = []
    for pod in core.list_namespaced_pod(DEMO_NAMESPACE).items:
        events = core.list_namespaced_event(DEMO_NAMESPACE, field_selector=f"involvedObject.name={pod.metadata.name}")
        last = events.items[-1] if events.items else None
        what = f"{last.reason}: {last.message}" if last else ""
        limits = pod.spec.containers[0].resources.limits or {}
        asks = ", ".join(f"{k.split('/')[-1]}={v}" for k, v in sorted(limits.items())) or "cpu only"
        statuses = pod.status.container_statuses or []
        ready = f"{sum(1 for c in statuses if c.ready)}/{len(pod.spec.containers)}"
        rows.append([pod.metadata.name, asks, pod.spec.node_name, pod.status.phase, ready,
                     _grant_summary((pod.metadata.annotations or {}).get(ANNOTATION_ALLOCATED)), what])
    return rows


def _grant_summary(allocated: str | None) -> str:
    """``GPU-3d1c5a0e… core 50% 8 GiB`` from the plugin's ``tessera.io/allocated`` record."""
    if not allocated:
        return ""
    parts = []
    for resources in decode_allocated(allocated).containers.values():
        gpus: list[str] = []
        extra = []
        for name, grant in sorted(resources.items()):
            gpus += [g for g in grant.gpus if g not in gpus]
            if grant.core is not None:
                extra.append(f"core {grant.core}%")
            if grant.mem_gib is not None:
                extra.append(f"{grant.mem_gib} GiB")
        parts.append(" ".join([",".join(shorten(g, UUID_SHOWN + 1) for g in gpus)] + extra))
    return "; ".join(parts)


def exporter_rows(exporters) -> list[list[object]]:
    """Scrape each exporter once and summarise what it serves."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for name, exporter in exporters.items():
        with urllib.request.urlopen(exporter.url + "/metrics", timeout=HTTP_HANG_GUARD_S) as resp:
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        used = sum(s.value for s in families["DCGM_FI_DEV_FB_USED"].samples) if "DCGM_FI_DEV_FB_USED" in families else 0
        health = families.get("tessera_gpu_health")
        healthy = sum(1 for s in health.samples if s.value == 1) if health else 0
        gpus = len({s.labels.get("UUID") for s in health.samples}) if health else 0
        series = sum(len(f.samples) for f in families.values())
        rows.append([name, exporter.url, gpus, int(used), f"{healthy}/{gpus}", series])
    return rows


def prometheus_rows(prom) -> list[list[object]]:
    """What the real Prometheus scraped: targets up, and per pod its GPU grant and memory used."""
    up, total = prom.targets_up()
    rows: list[list[object]] = [["targets up", f"{up}/{total}", "exporters and the extender"]]
    grants = prom.query("sum by (namespace, pod) (tessera_container_gpu_memory_grant_bytes)")
    cores = {(r["metric"].get("namespace"), r["metric"].get("pod")): float(r["value"][1])
             for r in prom.query("sum by (namespace, pod) (tessera_container_gpu_core_grant_ratio)")}
    for r in sorted(grants, key=lambda r: r["metric"].get("pod", "")):
        key = (r["metric"].get("namespace"), r["metric"].get("pod"))
        gib = float(r["value"][1]) / 2**30
        core = cores.get(key)
        rows.append([f"pod {key[1]}", f"{gib:g} GiB granted",
                     f"core {core * 100:g}%" if core is not None else "(no core grant: MIG or time-slice)"])
    free = prom.query("tessera_cluster_free_gpu_cores")
    rows += [[f"free {r['metric'].get('mode')} GPU cores", f"{float(r['value'][1]):g}", "extender"] for r in
             sorted(free, key=lambda r: r["metric"].get("mode", ""))]
    return rows
