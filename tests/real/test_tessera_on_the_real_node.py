"""Tessera's node side on a real kubelet and containerd, installed as deploy/ installs it
(realcluster.nodeside): the device plugin registered on the kubelet's real ``kubelet.sock``, the hook
in containerd's base runtime spec, the MPS control daemon in a process of its own. Pods are written
as a user writes them, placed by the tessera-scheduler through the extender, admitted by the real
device manager, and started by containerd under runc past tessera-hook; what a container got is read
back from inside it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from gpunode import (
    ALLOCATABLE, DRA_CONFIG, DRA_GPUS, MPS_USER, PROBE, host_pids_in, scrape, allocated_uuids, expected_devices, node_pod, parse_probe, probe_container,
)
from realcluster.nodeside import log_events, start_exporter
from realtier import events_for, read_pod, wait_for
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT
from tessera.assignment import read_assignment
from tessera.fakenvml import load_description
from tessera.daemonproc import REPO_ROOT
from tessera.fakenvml.control import FaultInjector

# The device plugin of the last commit before the real node's tests: the release an upgrade comes from.
PREVIOUS_RELEASE = "1209c2f199842850bbd10b6306c5671c407cb77c"
KINDS = {  # pod name: (limits, uid to run as)
    "whole": ({"nvidia.com/gpu": 1}, None),
    "mig": ({"nvidia.com/mig-1g.10gb": 1}, None),
    "mps-share": ({"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}, MPS_USER),
    "timesliced": ({"nvidia.com/gpu.shared": 1}, None),
}


def run_to_end(cluster, namespace: str, name: str) -> dict:
    """The pod once Succeeded or Failed (TimeoutError with its status and events otherwise)."""
    core = cluster.core_v1()
    try:
        return wait_for(lambda: (p := read_pod(core, namespace, name)) and
                        p["status"].get("phase") in ("Succeeded", "Failed") and p,
                        f"pod {namespace}/{name} run to its end", timeout_s=180)
    except TimeoutError as exc:
        current = read_pod(core, namespace, name)
        raise TimeoutError(f"{exc}: status {json.dumps((current or {}).get('status'))}; "
                           f"events {events_for(core, namespace, name)}") from None


def bound_pods(side) -> set[str]:
    """The pod UIDs the hook bound a grant to on this node (it binds only after verifying it)."""
    folder = side.state_dir / "bindings"
    return {f.read_text() for f in folder.iterdir() if not f.name.startswith(".")} if folder.is_dir() else set()


def check_container_sees_its_grant(cluster, side, pod: dict, container: str, limits: dict) -> None:
    """The container's device nodes, variables and mounts (its probe's output) are exactly what its
    grant says."""
    meta = pod["metadata"]
    probe = parse_probe(cluster.kubectl("logs", "-n", meta["namespace"], meta["name"], "-c", container).stdout)
    granted = allocated_uuids(pod, container)
    uuids = [u for resource in limits if resource in granted for u in granted[resource]]
    uuids = list(dict.fromkeys(uuids))
    assert uuids, granted
    assert probe.devices == expected_devices(side.description, uuids)
    assert probe.env["NVIDIA_VISIBLE_DEVICES"] == probe.env["CUDA_VISIBLE_DEVICES"] == ",".join(uuids)
    pipe, shm = side.mps_root / "pipe", side.mps_root / "shm"
    if "nvidia.com/mps-core" in limits:
        assert probe.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(limits["nvidia.com/mps-core"])
        assert probe.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={limits['nvidia.com/mps-memory']}G"
        assert probe.env["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe)
        assert probe.mounts[str(pipe)] == str(pipe)            # the daemon's pipe folder, bind-mounted
        assert probe.mounts["/dev/shm"] == str(shm)            # the daemon's shm folder as /dev/shm
        assert probe.uid == MPS_USER
    else:
        assert set(probe.env) == {"NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"}, probe.env
        assert str(pipe) not in probe.mounts and probe.mounts["/dev/shm"] != str(shm)


def test_the_device_plugin_registers_every_resource_with_the_real_kubelet(gpu_node, real_cluster):
    node = real_cluster.core_v1().read_node(gpu_node.node.name)
    assert {k: v for k, v in node.status.capacity.items() if k.startswith("nvidia.com/")} == ALLOCATABLE
    # The kubelet's own checkpoint lists every resource with the device IDs the plugin sent.
    checkpoint = json.loads(gpu_node.node.checkpoint.read_text())["Data"]
    registered = {resource: len(ids) for resource, ids in checkpoint["RegisteredDevices"].items()}
    assert registered == {k: int(v) for k, v in ALLOCATABLE.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_pod_of_each_kind_starts_under_containerd_with_exactly_its_granted_devices_env_and_mounts(
        gpu_node, real_cluster, namespace, kind):
    limits, uid = KINDS[kind]
    real_cluster.apply([node_pod(kind, namespace, [probe_container("main", limits)], run_as=uid)])
    pod = run_to_end(real_cluster, namespace, kind)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["spec"]["schedulerName"] == "tessera-scheduler"
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    assert pod["metadata"]["uid"] in bound_pods(gpu_node)     # tessera-hook verified its grant
    check_container_sees_its_grant(real_cluster, gpu_node, pod, "main", limits)


def test_two_containers_of_one_pod_each_get_only_their_own_resource(gpu_node, real_cluster, namespace):
    whole, shared = {"nvidia.com/gpu": 1}, {"nvidia.com/gpu.shared": 1}
    real_cluster.apply([node_pod("two", namespace, [probe_container("whole", whole),
                                                     probe_container("shared", shared)])])
    pod = run_to_end(real_cluster, namespace, "two")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    for container, limits in (("whole", whole), ("shared", shared)):
        check_container_sees_its_grant(real_cluster, gpu_node, pod, container, limits)
    granted = {c: allocated_uuids(pod, c) for c in ("whole", "shared")}
    assert granted["whole"]["nvidia.com/gpu"] != granted["shared"]["nvidia.com/gpu.shared"]


def test_a_grant_the_hook_refuses_ends_with_the_hook_s_reason_in_kubectl_describe(gpu_node, real_cluster,
                                                                                   namespace):
    # A tenant asks for 30 % of a GPU's threads and sets the variable to 100 % itself.
    limits = {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}
    container = probe_container("main", limits, env={"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"})
    real_cluster.apply([node_pod("greedy", namespace, [container], run_as=MPS_USER)])
    pod = run_to_end(real_cluster, namespace, "greedy")
    assert pod["status"]["phase"] == "Failed", pod["status"]
    assert pod["metadata"]["uid"] not in bound_pods(gpu_node)
    described = real_cluster.kubectl("describe", "pod", "-n", namespace, "greedy").stdout
    assert "tessera-hook: pod " + namespace + "/greedy container main: its environment sets " \
           "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100" in " ".join(described.split()), described


def test_the_base_spec_tessera_installs_is_containerd_s_own_default_spec_plus_the_hook(gpu_node):
    """containerd replaces its default spec with the base runtime spec: one that lacks a masked path of
    the running containerd's would unmask it in every container on the node (2.x masks
    /proc/interrupts, which 1.7 did not)."""
    node = gpu_node.node
    installed = json.loads((node.containerd_config_dir / "tessera-base-spec.json").read_text())
    hooks = installed.pop("hooks")
    default = json.loads(node.ctr("oci", "spec").stdout)
    for spec in (installed, default):
        spec.pop("ociVersion")          # the spec version each was written against
        spec["process"].pop("env", None)   # containerd 1.x put PATH here, 2.x adds it later: either way
        spec["linux"].pop("cgroupsPath")   # ctr's names its namespace; the CRI sets each container's
    assert installed == default
    assert [h["args"][1] for h in hooks["createRuntime"]] == ["createRuntime"]
    assert [h["args"][1] for h in hooks["poststop"]] == ["poststop"]


def plugin_events(side, offset: int = 0) -> list[dict]:
    """The device plugin's JSON log records from byte ``offset`` on."""
    return log_events(side.plugin.log_path, offset)


def wait_reregistered(cluster, side, offset: int, allocatable: dict[str, str] = ALLOCATABLE) -> None:
    """Until the plugin has registered every resource again (its log after ``offset``) and the Node's
    allocatable is ``allocatable`` again."""
    core = cluster.core_v1()
    wait_for(lambda: {e.get("resource") for e in plugin_events(side, offset) if e.get("event") == "registered"}
             >= set(allocatable), "every resource registered again", timeout_s=120)
    wait_for(lambda: all((core.read_node(side.node.name).status.allocatable or {}).get(k) == v
                         for k, v in allocatable.items()), f"allocatable {allocatable} again", timeout_s=120)


def running_holder(cluster, side, namespace: str, name: str, limits: dict) -> dict:
    """A pod that probes, then sleeps holding ``limits``: once Running with its probe printed."""
    container = probe_container("main", limits, command=PROBE + "; sleep 3600")
    cluster.apply([node_pod(name, namespace, [container])])
    core = cluster.core_v1()
    pod = wait_for(lambda: (p := read_pod(core, namespace, name)) and p["status"].get("phase") == "Running" and p,
                   f"pod {namespace}/{name} Running", timeout_s=180)
    wait_for(lambda: cluster.kubectl("logs", "-n", namespace, name).stdout.count("---") == 3,
             f"the probe of {name} printed")
    return pod


def test_a_kubelet_restart_keeps_running_pods_devices_and_hands_no_gpu_out_twice(gpu_node, real_cluster,
                                                                                  namespace):
    core = real_cluster.core_v1()
    whole = {"nvidia.com/gpu": 1}
    keeper = running_holder(real_cluster, gpu_node, namespace, "keeper", whole)
    kept_gpu = allocated_uuids(keeper, "main")["nvidia.com/gpu"]
    container_id = keeper["status"]["containerStatuses"][0]["containerID"]
    offset = gpu_node.plugin.log_path.stat().st_size

    gpu_node.node.restart_kubelet()
    wait_reregistered(real_cluster, gpu_node, offset)
    assert any(e.get("event") == "kubelet_restart_seen" for e in plugin_events(gpu_node, offset))

    # The running pod was not touched: same container, never restarted, its GPU still in it.
    after = read_pod(core, namespace, "keeper")
    status = after["status"]["containerStatuses"][0]
    assert after["status"]["phase"] == "Running" and status["containerID"] == container_id
    assert status["restartCount"] == 0
    device = next(p for p in expected_devices(gpu_node.description, kept_gpu) if p.startswith("/dev/nvidia")
                  and p[len("/dev/nvidia"):].isdigit())
    # (exec answers "pod does not exist" until the restarted kubelet has synced its pods from the API)
    seen = wait_for(lambda: (done := real_cluster.kubectl("exec", "-n", namespace, "keeper", "--", "stat", "-c", "%n",
                                                          device, check=False)).returncode == 0 and done.stdout,
                    "kubectl exec into keeper after the kubelet's restart")
    assert seen.strip() == device
    # The restarted kubelet read its checkpoint: the keeper's GPU is still the keeper's.
    entries = json.loads(gpu_node.node.checkpoint.read_text())["Data"]["PodDeviceEntries"]
    held = [e for e in entries if e["PodUID"] == keeper["metadata"]["uid"] and e["ResourceName"] == "nvidia.com/gpu"]
    assert [i for e in held for ids in e["DeviceIDs"].values() for i in ids] == kept_gpu

    # The node's other whole GPU goes to the next pod, and nothing is left for a third.
    second = running_holder(real_cluster, gpu_node, namespace, "second", whole)
    assert allocated_uuids(second, "main")["nvidia.com/gpu"] != kept_gpu
    real_cluster.apply([node_pod("third", namespace, [probe_container("main", whole)])])
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "third") if e["reason"] == "FailedScheduling"],
                       "the third whole-GPU pod refused a place")
    assert "nvidia.com/gpu" in refused[0]["message"], refused
    assert read_pod(core, namespace, "third")["status"]["phase"] == "Pending"


def release_checkout(commit: str, folder: Path) -> Path:
    """The tree of ``commit`` of this repository, extracted into ``folder``; skips where the history does
    not hold it (a shallow clone, an archive)."""
    have = subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"this checkout's history lacks the previous release {commit[:12]} (a shallow clone?)")
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def test_a_device_plugin_rollback_and_upgrade_leave_running_pods_untouched(gpu_node, real_cluster, namespace):
    """The plugin replaced by the previous release and then by this one, as a DaemonSet's rolling update
    replaces its pod: running pods keep their containers, every resource registers again each time,
    and the books carry over (no time-sliced replica handed out twice)."""
    core = real_cluster.core_v1()
    previous = release_checkout(PREVIOUS_RELEASE, real_cluster.workdir / "previous-release")
    holder = running_holder(real_cluster, gpu_node, namespace, "holder", {"nvidia.com/gpu.shared": 1})
    container_id = holder["status"]["containerStatuses"][0]["containerID"]
    # The previous release predates the DRA driver and refuses a config file with a draplugin section: it
    # gets the node's config without it (and so, while it runs, advertises the DRA driver's GPU too;
    # README: rolling back below the DRA driver's release).
    config = yaml.safe_load(gpu_node.config.read_text())
    config.pop("draplugin", None)
    previous_config = real_cluster.workdir / "previous-release.yaml"
    previous_config.write_text(yaml.safe_dump(config))
    # (its whole GPUs: the DRA driver's MIG-mode GPU has no MIG instance for it to advertise)
    whole = [i for i in DRA_GPUS if DRA_CONFIG["gpu_modes"].get(i) != "mig"]
    before_dra = {**ALLOCATABLE, "nvidia.com/gpu": str(int(ALLOCATABLE["nvidia.com/gpu"]) + len(whole))}
    try:
        for source, config_path, allocatable in ((previous, previous_config, before_dra),
                                                 (REPO_ROOT, gpu_node.config, ALLOCATABLE)):
            offset = gpu_node.plugin.log_path.stat().st_size
            gpu_node.restart_plugin(source, config_path)
            wait_reregistered(real_cluster, gpu_node, offset, allocatable)
            after = read_pod(core, namespace, "holder")
            status = after["status"]["containerStatuses"][0]
            assert after["status"]["phase"] == "Running" and status["containerID"] == container_id, source
            assert status["restartCount"] == 0
    finally:
        if f"PYTHONPATH={REPO_ROOT}" not in gpu_node.plugin.argv:   # the loop stopped half way
            gpu_node.restart_plugin(REPO_ROOT)
    # The plugin reads its books from the pods: the holder's replica is not offered again.
    shared = allocated_uuids(holder, "main")["nvidia.com/gpu.shared"]
    others = [running_holder(real_cluster, gpu_node, namespace, f"shared-{i}", {"nvidia.com/gpu.shared": 1})
              for i in range(3)]
    replicas = [json.loads(p["metadata"]["annotations"][ANNOTATION_ALLOCATED])["containers"]["main"]
                ["nvidia.com/gpu.shared"]["deviceIDs"] for p in [holder, *others]]
    assert len({i for ids in replicas for i in ids}) == 4, replicas
    assert all(allocated_uuids(p, "main")["nvidia.com/gpu.shared"] == shared for p in others)


def test_the_exporter_attributes_a_container_s_gpu_process_to_its_pod_through_the_real_node(gpu_node, real_cluster,
                                                                                           namespace):
    exporter, metrics = start_exporter(real_cluster, gpu_node)
    injector = FaultInjector(gpu_node.description)
    index = None
    try:
        # The GPU process is a child of the container's shell, not its init: it is found by its cgroup.
        container = probe_container("main", {"nvidia.com/gpu": 1}, command=PROBE + "; sleep 3600 & wait")
        real_cluster.apply([node_pod("trainer", namespace, [container])])
        core = real_cluster.core_v1()
        pod = wait_for(lambda: (p := read_pod(core, namespace, "trainer")) and p["status"].get("phase") == "Running"
                       and p, "pod trainer Running", timeout_s=180)
        container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        pid = wait_for(lambda: host_pids_in(container_id, "sleep"), "the trainer's sleep process")[0]
        [uuid] = allocated_uuids(pod, "main")["nvidia.com/gpu"]
        index = next(g.index for g in load_description(gpu_node.description).gpus if g.uuid == uuid)
        injector.set_processes(index, [(pid, 1024)])

        who = {"pod": "trainer", "namespace": namespace, "container": "main"}

        def attributed():
            samples = scrape(metrics)
            used = [v for n, labels, v in samples if n == "tessera_container_gpu_memory_used_bytes"
                    and labels.items() >= who.items() and labels.get("UUID", uuid) == uuid]
            device = [labels for n, labels, _ in samples if n == "DCGM_FI_DEV_FB_USED" and labels.get("UUID") == uuid]
            # The container's series exists (0 bytes) from its grant on; wait for a collection that saw the process.
            return used and any(used) and device and (used, device)

        used, device = wait_for(attributed, "the exporter's series for the trainer's GPU process", timeout_s=60)
        assert used == [1024 * 2**20]                         # the process, through the hook's record and its cgroup
        assert {k: device[0][k] for k in who} == who            # the device, through the pod-resources API
    finally:
        if index is not None:
            injector.set_processes(index, [])
        exporter.stop()


def test_a_fatal_xid_takes_the_gpu_out_of_the_real_node_s_allocatable_until_the_admin_clears_it(gpu_node,
                                                                                                real_cluster):
    core = real_cluster.core_v1()
    name = gpu_node.node.name

    def allocatable_gpus() -> str:
        return (core.read_node(name).status.allocatable or {}).get("nvidia.com/gpu")

    gpu = load_description(gpu_node.description).gpus[1]     # a whole-mode GPU
    FaultInjector(gpu_node.description).inject_xid(gpu.index, 48)   # double-bit ECC: fatal
    wait_for(lambda: allocatable_gpus() == "1", "the real node's allocatable nvidia.com/gpu down to 1")
    real_cluster.kubectl("annotate", "node", name, f"tessera.io/clear-gpu-health={gpu.uuid}")
    wait_for(lambda: allocatable_gpus() == "2", "nvidia.com/gpu back to 2 once the admin cleared the GPU")


def test_two_same_size_pods_bound_in_a_row_each_get_the_share_the_extender_signed_for_them(gpu_node, real_cluster,
                                                                                           namespace):
    """The kubelet's Allocate does not say which pod it is for: the per-shape rule keeps a second pod of
    the same size off the node until the first is allocated, so each pod gets its own signed share."""
    limits = {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}
    real_cluster.apply([node_pod(name, namespace, [probe_container("main", limits)], run_as=MPS_USER)
                        for name in ("first", "second")])
    pods = [run_to_end(real_cluster, namespace, name) for name in ("first", "second")]
    ids = []
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        doc, _ = read_assignment(pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
        allocated = json.loads(pod["metadata"]["annotations"][ANNOTATION_ALLOCATED])["containers"]["main"]
        for resource, assigned in doc.containers["main"].items():
            assert sorted(allocated[resource]["deviceIDs"]) == sorted(assigned.device_ids), (resource, pod["metadata"])
        ids.append(set(allocated["nvidia.com/mps-core"]["deviceIDs"]))
        check_container_sees_its_grant(real_cluster, gpu_node, pod, "main", limits)
    assert not ids[0] & ids[1]


def test_a_killed_mps_daemon_is_started_again_by_the_plugin_and_mps_pods_still_run(gpu_node, real_cluster, namespace):
    """The mps-control-daemon container crashes: the plugin starts a daemon on the same pipe folder as
    the MPS user (never a second one beside a live one), and MPS pods start as before."""
    offset = gpu_node.plugin.log_path.stat().st_size
    killed = gpu_node.mps_daemon.proc.pid
    gpu_node.mps_daemon.proc.kill()
    gpu_node.mps_daemon.proc.wait(timeout=10)
    wait_for(lambda: any(e.get("event") == "mps_daemon_started" for e in plugin_events(gpu_node, offset)),
             "the plugin starting the MPS daemon again", timeout_s=120)
    pid_file = gpu_node.mps_root / "pipe" / "nvidia-cuda-mps-control.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the new daemon's pid file"))
    assert pid != killed and Path(f"/proc/{pid}").stat().st_uid == MPS_USER
    limits = {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}
    real_cluster.apply([node_pod("after-crash", namespace, [probe_container("main", limits)], run_as=MPS_USER)])
    pod = run_to_end(real_cluster, namespace, "after-crash")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    check_container_sees_its_grant(real_cluster, gpu_node, pod, "main", limits)
