"""``tessera inspect`` (and ``kubectl tessera inspect``) against the embedded cluster: the extender places
pods of every kind, the device plugins allocate them and write the ledger, a fatal Xid takes a GPU out,
and the command, run as a real process through the cluster's kubeconfig, shows what the ledger says.

One cluster for the module: API server, four simulated kubelets, the extender with its webhook and
scheduler loop, a device plugin per node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from kubernetes import client

from extender.kubeapi import api_client
from tessera import (
    ANNOTATION_ALLOCATED,
    ANNOTATION_ASSIGNMENT,
    ANNOTATION_INVENTORY,
    NAMESPACE,
    RESOURCE_GPU_SHARED,
    SERVICE_ACCOUNT_EXTENDER,
)
from tessera.assignment import Assignment, ResourceAssignment
from tessera_cli.demo_pods import GPU_COMMAND, GPU_REQUESTS, pod
from kubectl_plugin import VENV_BIN, kubectl_or_skip, plugin_env

TESSERA = [str(VENV_BIN / "tessera")] if (VENV_BIN / "tessera").exists() else [sys.executable, "-m", "tessera_cli.main"]
XID_NODE, XID_GPU = "a100-whole", 7
WAITING_POD = "between-assignment-and-binding"
SHAPES = ["--shape", "mps-core=50,mps-memory=8", "--shape", "gpu=1"]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a command a user runs: no fake-NVML control folder of a test, no in-cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("TESSERA_FAKE_NVML_CONTROL", "KUBERNETES_SERVICE_HOST")}
    env["GRPC_VERBOSITY"] = "ERROR"
    return {**env, **extra}


def _allocatable_everywhere(core, count: int) -> bool:
    nodes = core.list_node().items
    return len(nodes) == count and all(
        any(k.startswith("nvidia.com/") and v != "0" for k, v in (n.status.allocatable or {}).items()) for n in nodes)


def _all_allocated(core) -> bool:
    pods = core.list_namespaced_pod("default").items
    return len(pods) == len(GPU_REQUESTS) and all(
        (p.metadata.annotations or {}).get(ANNOTATION_ALLOCATED) for p in pods)


def _inventory(core, node: str) -> dict:
    return json.loads(core.read_node(node).metadata.annotations[ANNOTATION_INVENTORY])


def _wait_assignment_pod(core, cluster) -> str:
    """A pod the extender has assigned and not yet bound (the moment between its patch and the Binding):
    a pod nobody schedules, with an assignment on a100-mps's last free GPU. Returns that GPU's UUID."""
    held = {g for p in core.list_namespaced_pod("default").items
            for res in json.loads(p.metadata.annotations[ANNOTATION_ALLOCATED])["containers"]["main"].values()
            for g in res["gpus"]}
    uuid = [g["uuid"] for g in _inventory(core, "a100-mps")["gpus"] if g["uuid"] not in held][-1]
    created = core.create_namespaced_pod("default", pod(WAITING_POD, GPU_COMMAND))
    doc = Assignment("a100-mps", created.metadata.uid, {"main": {
        "nvidia.com/mps-core": ResourceAssignment((uuid,), tuple(f"{uuid}::core::{n}" for n in range(10)), core=10),
        "nvidia.com/mps-memory": ResourceAssignment((uuid,), tuple(f"{uuid}::mem::{n}" for n in range(4)), mem_gib=4),
    }})
    # Written as the extender writes it (only Tessera's own accounts may: the webhook refuses a user).
    extender = client.CoreV1Api(api_client(str(cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT_EXTENDER))))
    extender.patch_namespaced_pod(WAITING_POD, "default",
                                  {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: json.dumps(doc.to_dict())}}})
    return uuid


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    saved = os.environ.pop("TESSERA_FAKE_NVML_CONTROL", None)  # plugins and fake-nvml must share control files
    from simcluster.plugins import device_plugins
    from simcluster import running
    from simcluster.scheduling import scheduling

    try:
        with running(seed=11) as cluster, scheduling(cluster), device_plugins(cluster):
            core = cluster.core_v1()
            cluster.wait_for(lambda: _allocatable_everywhere(core, len(cluster.nodes)), 30, what="Tessera resources")
            for name, limits, _mode in GPU_REQUESTS:
                core.create_namespaced_pod("default", pod(name, GPU_COMMAND, limits), _preload_content=False)
            cluster.wait_for(lambda: _all_allocated(core), 40, what="every GPU pod allocated by its plugin")
            subprocess.run([*TESSERA, "fake-nvml", "xid", "--node", str(cluster.nodes[XID_NODE].nvml_description),
                            "--gpu", str(XID_GPU), "--xid", "48"], check=True, env=_env(), timeout=30)
            cluster.wait_for(lambda: not _inventory(core, XID_NODE)["gpus"][XID_GPU]["health"].get("healthy", True),
                             10, what="the fatal Xid in the node inventory")
            waiting_gpu = _wait_assignment_pod(core, cluster)
            # Nodes whose GPUs cannot be read: one without the inventory, one with a broken one.
            core.create_node({"metadata": {"name": "no-plugin"}})
            core.create_node({"metadata": {"name": "broken-inventory",
                                           "annotations": {ANNOTATION_INVENTORY: '{"version": 1, "gpus": 3}'}}})
            yield cluster, core, waiting_gpu
    finally:
        if saved is not None:
            os.environ["TESSERA_FAKE_NVML_CONTROL"] = saved


def inspect(cluster, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TESSERA, "inspect", "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, env=env or _env())


@pytest.fixture(scope="module")
def view(cluster):
    result = inspect(cluster[0], "-o", "json", *SHAPES)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def gpus_of(view: dict) -> dict[str, dict]:
    return {g["uuid"]: {**g, "node": n["name"]} for n in view["nodes"] for g in n["gpus"]}


def test_every_allocated_pod_holds_exactly_what_its_ledger_says(cluster, view):
    _, core, _ = cluster
    holders: dict[str, list[tuple[dict, dict]]] = {}
    for gpu in gpus_of(view).values():
        for h in gpu["holders"]:
            holders.setdefault(f"{h['pod']}/{h['container']}", []).append((h, gpu))
    pods = [p for p in core.list_namespaced_pod("default").items if ANNOTATION_ALLOCATED in p.metadata.annotations]
    assert sorted(p.metadata.name for p in pods) == sorted(name for name, _, _ in GPU_REQUESTS)
    for p in pods:
        ledger = json.loads(p.metadata.annotations[ANNOTATION_ALLOCATED])
        for container, resources in ledger["containers"].items():
            held = holders[f"{p.metadata.name}/{container}"]
            assert {h["state"] for h, _ in held} == {"allocated"}
            assert {gpu["node"] for _, gpu in held} == {p.spec.node_name}
            shown = {h["mig_uuid"] or gpu["uuid"] for h, gpu in held}
            assert shown == {u for r in resources.values() for u in r["gpus"]}, p.metadata.name
            if "nvidia.com/mps-core" in resources:
                assert sum(h["core_pct"] for h, _ in held) == resources["nvidia.com/mps-core"]["core"]
            if "nvidia.com/mps-memory" in resources:
                assert sum(h["memory_gib"] for h, _ in held) == resources["nvidia.com/mps-memory"]["memGiB"]
            if RESOURCE_GPU_SHARED in resources:
                assert sum(h["replicas"] for h, _ in held) == len(resources[RESOURCE_GPU_SHARED]["deviceIDs"])


def test_a_pod_assigned_and_not_yet_allocated_is_shown_as_such(cluster, view):
    _, _, waiting_gpu = cluster
    gpu = gpus_of(view)[waiting_gpu]
    assert [(h["pod"], h["state"], h["core_pct"], h["memory_gib"]) for h in gpu["holders"]] == [
        (WAITING_POD, "assigned", 10, 4)]
    assert (gpu["free"]["core_pct"], gpu["free"]["memory_gib"]) == (90, gpu["memory_gib"] - 4)


def test_free_capacity_is_capacity_minus_what_is_held(cluster, view):
    _, core, _ = cluster
    shared = {n.metadata.name: int(((n.status and n.status.capacity) or {}).get(RESOURCE_GPU_SHARED, 0))
              for n in core.list_node().items}
    for gpu in gpus_of(view).values():
        free, held = gpu["free"], gpu["holders"]
        if gpu["mode"] == "mps":
            assert free["core_pct"] == 100 - sum(h["core_pct"] for h in held)
            assert free["memory_gib"] == gpu["memory_gib"] - sum(h["memory_gib"] for h in held)
        elif gpu["mode"] == "exclusive":
            assert free["whole"] == (not held)
        elif gpu["mode"] == "timeslice":
            assert free["replicas_total"] == shared[gpu["node"]] // 4
            assert free["replicas"] == free["replicas_total"] - sum(h["replicas"] for h in held)
        else:
            layout = Counter(gpu["mig_instances"].values())
            layout.subtract(h["mig_profile"] for h in held)
            assert free["mig"] == {p: n for p, n in layout.items() if n}
    used = Counter(g["mode"] for g in gpus_of(view).values() if g["holders"])
    assert used == {"mps": 5, "exclusive": 2, "mig": 1, "timeslice": 1}  # 4 by the demo pods, 1 assigned


def test_a_gpu_with_a_fatal_xid_is_unhealthy_with_its_reason(view):
    node = next(n for n in view["nodes"] if n["name"] == XID_NODE)
    gpu = node["gpus"][XID_GPU]
    assert (gpu["healthy"], gpu["schedulable"], gpu["reason"]) == (False, False, "fatal Xid 48")
    assert all(g["healthy"] for g in node["gpus"] if g["index"] != XID_GPU)


def test_nodes_without_a_readable_inventory_are_shown_with_the_reason(view):
    nodes = {n["name"]: n for n in view["nodes"]}
    assert "no tessera.io/gpu-inventory annotation" in nodes["no-plugin"]["problem"]
    assert "unreadable" in nodes["broken-inventory"]["problem"] and "node" in nodes["broken-inventory"]["problem"]
    assert nodes["no-plugin"]["gpus"] == [] and nodes["broken-inventory"]["fragmentation_cores"] is None


def test_fragmentation_is_fgd_over_the_given_shapes(view):
    """FGD by hand from the free capacity shown: a share shape cannot use exclusive GPUs or MPS GPUs with
    too little free; a whole-GPU shape cannot use MPS shares, or anything when no whole GPU is free."""
    assert view["shapes"] == [{"shape": "mps-core=50 mps-memory=8", "weight": 1}, {"shape": "gpu=1", "weight": 1}]
    assert view["shape_source"] == "given with --shape"
    for node in view["nodes"]:
        if node["problem"]:
            continue
        open_gpus = [g for g in node["gpus"] if g["schedulable"]]
        mps = [(g["free"]["core_pct"], g["free"]["memory_gib"]) for g in open_gpus if g["mode"] == "mps"]
        excl = 100 * sum(1 for g in open_gpus if g["mode"] == "exclusive" and g["free"]["whole"])
        mps_idle = sum(c for c, _ in mps)
        share = excl + sum(c for c, m in mps if c and (c < 50 or m < 8))
        whole = mps_idle if excl >= 100 else mps_idle + excl
        assert node["fragmentation_cores"] == pytest.approx((share + whole) / 2), node["name"]
        assert node["idle_cores"] == mps_idle + excl
    assert view["fragmentation_cores"] == pytest.approx(sum(n["fragmentation_cores"] or 0 for n in view["nodes"]))
    assert view["fragmentation_cores"] > 0


def _extender_cache(core):
    """The extender's own cache, fed the API server's nodes and pods (reading assignments)."""
    from extender.cache import ClusterCache

    cache = ClusterCache()
    for node in json.loads(core.list_node(_preload_content=False).data)["items"]:
        cache.node_event("ADDED", node)
    for p in json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]:
        cache.pod_event("ADDED", p)
    return cache


def test_numbers_match_the_extenders_metrics_for_the_same_shapes(cluster, view):
    """The extender's own cache (fed the API server's nodes and pods, reading assignments) and its metrics
    collector, with the same two shapes, report what inspect read from the ledger."""
    from extender.placement.fragmentation import FragmentationModel, TaskShape
    from extender.metrics import ExtenderMetrics
    from extender.placement import PolicyContext
    from tessera.podrequest import GpuAsk

    cache = _extender_cache(cluster[1])
    model = FragmentationModel([(TaskShape(0, 0, GpuAsk("mps", core=50, memory_gib=8)), 1),
                                (TaskShape(0, 0, GpuAsk("gpu", count=1)), 1)])
    registry = ExtenderMetrics(cache, PolicyContext(shapes=model)).registry
    nodes = [n for n in view["nodes"] if n["gpus"]]
    assert len(nodes) == 4
    for node in nodes:
        assert registry.get_sample_value("tessera_node_fragmentation_cores", {"node": node["name"]}) == \
            pytest.approx(node["fragmentation_cores"]), node["name"]
    for mode, cores in view["free_cores_by_mode"].items():
        assert registry.get_sample_value("tessera_cluster_free_gpu_cores", {"mode": mode}) == pytest.approx(cores)


def test_model_pressure_is_the_one_the_extender_shows_for_the_same_state(cluster, view):
    """With half the cores asked naming A100, inspect's pressure per GPU model is half of all usable idle
    cores over A100's (capped at 1), 0 for the others, and the extender's metric reports the same."""
    from extender.metrics import ExtenderMetrics
    from extender.placement import PolicyContext
    from extender.placement.fragmentation import FragmentationModel
    from extender.placement.shapes import shape_counts

    assert set(view["model_pressure"].values()) == {0.0}  # no shape names a model
    a100 = next(m for m in view["model_pressure"] if "A100" in m)
    texts = ["gpu=1", f"gpu=1,models={a100}"]
    result = inspect(cluster[0], "-o", "json", *[a for t in texts for a in ("--shape", t)])
    assert result.returncode == 0, result.stderr
    named = json.loads(result.stdout)
    pressure = named["model_pressure"]
    idle = sum(n["idle_cores"] for n in named["nodes"])
    a100_idle = sum(n["idle_cores"] for n in named["nodes"] if n["gpus"] and n["gpus"][0]["model"].replace(" ", "-")
                    in a100)
    assert 0 < a100_idle <= idle  # (time-sliced and MIG GPUs are outside the capacity model)
    assert pressure[a100] == pytest.approx(min(1.0, 0.5 * idle / a100_idle), abs=1e-4)
    assert {m: v for m, v in pressure.items() if m != a100} == dict.fromkeys(set(pressure) - {a100}, 0.0)
    cache = _extender_cache(cluster[1])
    registry = ExtenderMetrics(cache, PolicyContext(shapes=FragmentationModel(shape_counts(texts).items()))).registry
    for model, value in pressure.items():
        assert registry.get_sample_value("tessera_gpu_model_pressure", {"model": model}) == \
            pytest.approx(value, abs=1e-4), model
    text = inspect(cluster[0], *[a for t in texts for a in ("--shape", t)]).stdout
    line = next(row for row in text.splitlines() if row.startswith("GPU model pressure"))
    assert f"{a100} {pressure[a100]:g}" in line


def test_text_output_has_the_tables_and_every_pod(cluster):
    result = inspect(cluster[0])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for header in ("NODE", "GPU", "MODE", "HEALTH", "HELD BY", "CORE", "GiB", "FREE", "FRAGMENTATION"):
        assert header in out
    for name, _, _ in GPU_REQUESTS:
        assert f"default/{name}" in out
    assert "UNHEALTHY: fatal Xid 48" in out and "assigned, not yet allocated" in out
    assert "learned from" in out  # no --shape: the shapes of the pods holding shares


def test_in_process_call_gives_the_command_s_view(cluster, view):
    """What ``tessera demo`` calls: the same view from a CoreV1Api, and the same text."""
    from tessera_cli.inspect import inspect_cluster
    from tessera_cli.inspect_table import render_json, render_text

    here = inspect_cluster(cluster[1], shapes=SHAPES[1::2])
    assert render_json(here) == view
    assert "default/mps-50-8" in render_text(here)


def test_node_filter_and_clear_errors(cluster, tmp_path):
    result = inspect(cluster[0], "--node", "t4-timeslice", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [n["name"] for n in json.loads(result.stdout)["nodes"]] == ["t4-timeslice"]

    missing = inspect(cluster[0], "--node", "nope")
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0 and "no node named" in missing.stderr

    dead = tmp_path / "kubeconfig"
    dead.write_text(Path(cluster[0].kubeconfig).read_text().replace(cluster[0].url, "http://127.0.0.1:9"))
    gone = subprocess.run([*TESSERA, "inspect", "--kubeconfig", str(dead)], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.startswith("tessera inspect: cannot list nodes from http://127.0.0.1:9")
    assert gone.stderr.strip().count("\n") == 0, gone.stderr

    nothing = subprocess.run([*TESSERA, "inspect"], capture_output=True, text=True, timeout=60,
                             env=_env(KUBECONFIG="", HOME=str(tmp_path)))
    assert nothing.returncode == 1 and "no kubeconfig" in nothing.stderr and nothing.stderr.count("\n") == 1


def test_kubectl_tessera_inspect_prints_what_tessera_inspect_prints(cluster):
    """The real kubectl runs the installed kubectl-tessera for ``kubectl tessera inspect``, with the
    kubeconfig it was given through KUBECONFIG; the tables and the JSON are those of ``tessera inspect``."""
    env = plugin_env(_env(KUBECONFIG=str(cluster[0].kubeconfig)))
    kubectl = kubectl_or_skip()
    for args in ((*SHAPES,), ("-o", "json", "--node", "a100-mps")):
        through_kubectl = subprocess.run([kubectl, "tessera", "inspect", *args], capture_output=True, text=True,
                                         env=env, timeout=60)
        assert through_kubectl.returncode == 0, through_kubectl.stderr
        assert through_kubectl.stdout == inspect(cluster[0], *args).stdout
    doc = json.loads(through_kubectl.stdout)
    assert doc["server"] == cluster[0].url
    held = {h["pod"] for g in doc["nodes"][0]["gpus"] for h in g["holders"]}
    assert held == {"mps-50-8", "mps-30-20", "mps-25-auto", "mps-200", WAITING_POD}


def _pod_phases(core) -> dict[str, str]:
    return {f"{p.metadata.namespace}/{p.metadata.name}": p.status.phase or ""
            for p in core.list_pod_for_all_namespaces().items}


def test_each_holder_shows_its_pods_phase(cluster, view):
    _, core, _ = cluster
    phases = _pod_phases(core)
    held = [h for g in gpus_of(view).values() for h in g["holders"]]
    assert held and all(h["phase"] == phases[f"{h['namespace']}/{h['pod']}"] for h in held)
    assert {h["phase"] for h in held if h["pod"] != WAITING_POD} == {"Running"}
    assert [h["phase"] for h in held if h["pod"] == WAITING_POD] == ["Pending"]  # assigned, never bound
    words = [line.split() for line in inspect(cluster[0]).stdout.splitlines()]
    phase_shown = {w[w.index(key) + 1] for key in (f"default/{WAITING_POD}",) for w in words if key in w}
    assert phase_shown == {"Pending"}  # PHASE is the column after HELD BY
    assert {w[w.index(key) + 1] for key in ("default/mps-30-20",) for w in words if key in w} == {"Running"}


def test_nodes_show_their_address_and_allocated_of_total_as_gpushare_does(cluster, view):
    """Per node its InternalIP and allocated/total GPU cores and GiB; for the cluster the sums, in one line."""
    cluster, core, _ = cluster
    core.patch_node_status("no-plugin", {"status": {"addresses": [
        {"type": "Hostname", "address": "no-plugin"}, {"type": "InternalIP", "address": "10.1.2.3"}]}})
    for node in json.loads(inspect(cluster, "-o", "json").stdout)["nodes"]:
        status = core.read_node(node["name"]).status
        listed = (status and status.addresses) or []
        assert node["addresses"] == {a.type: a.address for a in reversed(listed)}, node["name"]
    for node in (n for n in view["nodes"] if n["gpus"]):
        gpus, held = node["gpus"], node["allocation"]
        assert held["cores_total"] == 100 * len(gpus)
        assert held["cores"] == pytest.approx(sum(100 - g["free"]["cores"] for g in gpus))
        assert held["memory_gib_total"] == sum(g["memory_gib"] for g in gpus)
        assert held["memory_gib"] == sum(h["memory_gib"] or 0 for g in gpus for h in g["holders"])
    nodes = {n["name"]: n for n in view["nodes"]}
    mps = [h for g in nodes["a100-mps"]["gpus"] for h in g["holders"]]
    assert nodes["a100-mps"]["allocation"]["cores"] == sum(h["core_pct"] for h in mps)  # every MPS share by hand
    whole = nodes["a100-whole"]
    assert whole["allocation"]["cores"] == 100 * sum(1 for g in whole["gpus"] if g["holders"])
    assert view["allocation"] == {k: pytest.approx(sum(n["allocation"][k] for n in nodes.values() if n["gpus"]))
                                  for k in ("cores", "cores_total", "memory_gib", "memory_gib_total")}

    out = inspect(cluster).stdout
    Path(os.environ.get("TESSERA_INSPECT_DUMP", os.devnull)).write_text(out)
    assert "ADDRESS" in out and "CORES ALLOCATED/TOTAL" in out and "GiB ALLOCATED/TOTAL" in out
    cores, total = view["allocation"]["cores"], view["allocation"]["cores_total"]
    assert f"Allocated/total in the cluster: {cores:g}/{total:g} ({100 * cores / total:.0f}%) GPU cores" in out
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():  # a node's first line is its row of the node table
        if line.split():
            lines.setdefault(line.split()[0], line.split())
    assert lines["no-plugin"][1] == "10.1.2.3" and lines["a100-mps"][1] == "127.0.0.1"
    mps_held = nodes["a100-mps"]["allocation"]
    assert f"{mps_held['cores']:g}/{mps_held['cores_total']:g}" in lines["a100-mps"]
