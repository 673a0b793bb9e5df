"""Tessera's DRA driver (gpu.tessera.io) on the real node, beside its device plugin: the GPU of
``draplugin.gpus`` published as a ResourceSlice, allocated to ResourceClaims by kube-scheduler's own
DRA allocator (the default scheduler: these pods ask for no extended resource), prepared by the real
kubelet through the driver, and started by containerd with the CDI spec the driver wrote, past
tessera-hook, which verifies the grant the spec carries. What the container got is read back from
inside it."""

from __future__ import annotations

import json

import kubernetes

from gpunode import (
    ALLOCATABLE, DRA_CONFIG, DRA_GPUS, MPS_USER, NODE, PROBE, expected_devices, host_pids_in, node_pod, parse_probe, probe_container, scrape,
)
from realcluster.draside import DRIVER
from realcluster.nodeside import log_events
from realtier import events_for, read_pod, wait_for
from tessera import ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY
from tessera.fakenvml import load_description

GROUP = "resource.k8s.io"
MIG_GPU = DRA_GPUS[2]   # in draplugin.gpu_modes mig
TIMESLICE_GPU = DRA_GPUS[3]   # in draplugin.gpu_modes timeslice, two claims at once


def gpu_uuid(side, index: int) -> str:
    return next(g.uuid for g in load_description(side.description).gpus if g.index == index)


def claim_template(namespace: str, name: str = "one-gpu") -> dict:
    """A ResourceClaimTemplate for one whole GPU of the driver's DeviceClass, as a user writes it."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "gpu", "exactly": {"deviceClassName": "gpu.tessera.io"}}]}}}}


def mps_template(namespace: str, name: str, cores: int, gib: int) -> dict:
    """A ResourceClaimTemplate for an MPS share of ``cores`` % and ``gib`` GiB of one GPU."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "share", "exactly": {"deviceClassName": "mps.gpu.tessera.io", "capacity": {
                    "requests": {"cores": str(cores), "memory": f"{gib}Gi"}}}}]}}}}


def claim_pod(name: str, namespace: str, command: str, *, template: str = "one-gpu",
              env: dict[str, str] | None = None, run_as: int | None = None) -> dict:
    """A pod for the real node whose one container uses a claim made from ``template`` (or, with
    ``template=""``, no claim at all)."""
    container = probe_container("main", {}, env=env, command=command)
    del container["resources"]["limits"]
    pod = node_pod(name, namespace, [container], run_as=run_as)
    if template:
        pod["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": template}]
        container["resources"]["claims"] = [{"name": "gpu"}]
    return pod


def wait_phase(cluster, namespace: str, name: str, phases: tuple[str, ...]) -> dict:
    core = cluster.core_v1()
    try:
        return wait_for(lambda: (p := read_pod(core, namespace, name)) and p["status"].get("phase") in phases and p,
                        f"pod {namespace}/{name} in {phases}", timeout_s=180)
    except TimeoutError as exc:
        current = read_pod(core, namespace, name)
        raise TimeoutError(f"{exc}: status {json.dumps((current or {}).get('status'))}; "
                           f"events {events_for(core, namespace, name)}") from None


def running_with_probe(cluster, namespace: str, name: str):
    """The pod once Running and its probe's output printed: (pod, parsed probe)."""
    pod = wait_phase(cluster, namespace, name, ("Running",))

    def printed():   # the probe's four parts, up to its uid line (a command may print more after it)
        text = cluster.kubectl("logs", "-n", namespace, name, check=False).stdout
        *head, tail = text.split("---\n")
        uid = tail.splitlines()[0] if len(head) == 3 and tail.strip() else ""
        return uid.strip().isdigit() and "---\n".join([*head, uid + "\n"])
    return pod, parse_probe(wait_for(printed, f"the probe of {namespace}/{name} printed", timeout_s=60))


def pod_claim(cluster, pod: dict) -> dict:
    """The ResourceClaim kube-scheduler allocated for the pod's one claim."""
    (status,) = pod["status"]["resourceClaimStatuses"]
    objects = kubernetes.client.CustomObjectsApi(cluster.client())
    return objects.get_namespaced_custom_object(GROUP, "v1", pod["metadata"]["namespace"], "resourceclaims",
                                                status["resourceClaimName"])


def node_slices(cluster) -> list[dict]:
    objects = kubernetes.client.CustomObjectsApi(cluster.client())
    return objects.list_cluster_custom_object(GROUP, "v1", "resourceslices",
                                              field_selector=f"spec.nodeName={NODE},spec.driver={DRIVER}")["items"]


def test_the_driver_publishes_only_its_gpus_and_the_device_plugin_leaves_them_out(dra_node, real_cluster):
    side = dra_node.side
    slices = {s["metadata"]["name"]: s for s in node_slices(real_cluster)}
    published, counters = slices[f"{NODE}-{DRIVER}"], slices[f"{NODE}-{DRIVER}-counters"]
    assert len(slices) == 2 and {s["spec"]["pool"]["resourceSliceCount"] for s in slices.values()} == {2}
    devices = {d["name"]: d for d in published["spec"]["devices"]}
    whole = {f"gpu-{i}" for i in DRA_GPUS if i != MIG_GPU}
    assert whole <= set(devices) and f"gpu-{MIG_GPU}" not in devices
    # the MIG GPU: every placement of its six profiles (A100 80GB: 7 + 4 + 3 + 2 + 1 + 1) over one counter set
    assert len(set(devices) - whole) == 18 and all(n.startswith(f"gpu-{MIG_GPU}-mig-") for n in set(devices) - whole)
    (counter_set,) = counters["spec"]["sharedCounters"]
    assert counter_set["name"] == f"gpu-{MIG_GPU}-mig" and len(counter_set["counters"]) == 9
    attrs = devices[f"gpu-{DRA_GPUS[0]}"]["attributes"]
    assert attrs["uuid"]["string"] == gpu_uuid(side, DRA_GPUS[0])
    assert attrs["productName"]["string"].startswith("NVIDIA A100")
    assert published["spec"]["pool"]["name"] == NODE
    assert published["metadata"]["ownerReferences"][0]["kind"] == "Node"
    # Written once: what the API server stores reads as what the driver wants (no rewrite loop on its
    # own MODIFIED events, which a normalised field would start).
    # Since the driver's last start (a node-config test may have restarted it in place, which moves a GPU):
    # at most one write per slice, and a first start's are the two publishes.
    events = log_events(dra_node.plugin.log_path)
    starts = [i for i, e in enumerate(events) if e.get("event") == "dra_plugin_started"]
    writes = [e for e in events[starts[-1]:] if e.get("event") in ("resource_slice_published", "resource_slice_updated")]
    assert len(writes) <= 2, json.dumps(writes[2:4])
    if len(starts) == 1:
        assert [e["event"] for e in writes] == ["resource_slice_published"] * 2, json.dumps(writes)
    assert published["spec"]["pool"]["generation"] == 1
    node = real_cluster.core_v1().read_node(NODE)
    inventory = json.loads(node.metadata.annotations[ANNOTATION_INVENTORY])
    listed = {g["uuid"] for g in inventory["gpus"]}
    assert gpu_uuid(side, DRA_GPUS[0]) not in listed and len(listed) == 5


def test_a_claimed_gpu_reaches_the_container_through_cdi_and_is_unprepared_after(dra_node, real_cluster, namespace):
    side = dra_node.side
    real_cluster.apply([claim_template(namespace), claim_pod("trainer", namespace, PROBE + "; sleep 3600")])
    pod, probe = running_with_probe(real_cluster, namespace, "trainer")
    claim = pod_claim(real_cluster, pod)
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"]) == (DRIVER, NODE, f"gpu-{DRA_GPUS[0]}")
    uuid = gpu_uuid(side, DRA_GPUS[0])
    assert probe.devices == expected_devices(side.description, [uuid])
    assert probe.env["NVIDIA_VISIBLE_DEVICES"] == probe.env["CUDA_VISIBLE_DEVICES"] == uuid
    # The hook verified the grant the CDI spec carried and bound it to this pod.
    bindings = side.state_dir / "bindings"
    assert pod["metadata"]["uid"] in {f.read_text() for f in bindings.iterdir() if not f.name.startswith(".")}
    spec_file = dra_node.cdi_dir / f"k8s.gpu.tessera.io-claim_{claim['metadata']['uid']}.json"
    assert spec_file.exists() and spec_file.stat().st_mode & 0o077 == 0
    real_cluster.kubectl("delete", "pod", "-n", namespace, "trainer", "--wait=true", "--timeout=120s")
    wait_for(lambda: not spec_file.exists(), "the claim's CDI spec removed at unprepare", timeout_s=120)
    checkpoint = json.loads(dra_node.checkpoint.read_text())
    assert claim["metadata"]["uid"] not in checkpoint["claims"]


def test_a_second_claim_waits_until_the_only_gpu_is_released(dra_node, real_cluster, namespace):
    real_cluster.apply([claim_template(namespace), claim_pod("first", namespace, PROBE + "; sleep 3600")])
    running_with_probe(real_cluster, namespace, "first")
    real_cluster.apply([claim_pod("second", namespace, PROBE + "; sleep 3600")])
    core = real_cluster.core_v1()
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "second") if e["reason"] == "FailedScheduling"],
                       "kube-scheduler's FailedScheduling for the second claim", timeout_s=120)
    assert "cannot allocate all claims" in refused[-1]["message"], refused
    assert read_pod(core, namespace, "second")["status"]["phase"] == "Pending"
    real_cluster.kubectl("delete", "pod", "-n", namespace, "first", "--wait=true", "--timeout=120s")
    _, probe = running_with_probe(real_cluster, namespace, "second")
    assert probe.env["NVIDIA_VISIBLE_DEVICES"] == gpu_uuid(dra_node.side, DRA_GPUS[0])


def test_restarts_of_the_driver_and_the_kubelet_keep_a_prepared_claim(dra_node, real_cluster, namespace):
    """The driver restarted (its checkpoint), then the kubelet (which deletes the node's ResourceSlices at
    start: the driver publishes again): the running pod keeps its container, and its claim is still
    unprepared when it ends."""
    real_cluster.apply([claim_template(namespace), claim_pod("holder", namespace, PROBE + "; sleep 3600")])
    pod, _ = running_with_probe(real_cluster, namespace, "holder")
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    claim_uid = pod_claim(real_cluster, pod)["metadata"]["uid"]
    spec_file = dra_node.cdi_dir / f"k8s.gpu.tessera.io-claim_{claim_uid}.json"
    dra_node.restart()
    assert claim_uid in json.loads(dra_node.checkpoint.read_text())["claims"]
    before = {s["metadata"]["uid"] for s in node_slices(real_cluster)}
    dra_node.side.node.restart_kubelet()
    wait_for(lambda: len(s := node_slices(real_cluster)) == 2 and not {x["metadata"]["uid"] for x in s} & before,
             "the driver's ResourceSlice published again after the kubelet deleted it", timeout_s=120)
    core = real_cluster.core_v1()
    after = read_pod(core, namespace, "holder")
    status = after["status"]["containerStatuses"][0]
    assert after["status"]["phase"] == "Running" and status["containerID"] == container_id
    assert status["restartCount"] == 0 and spec_file.exists()
    real_cluster.kubectl("delete", "pod", "-n", namespace, "holder", "--wait=true", "--timeout=120s")
    wait_for(lambda: not spec_file.exists(), "the claim unprepared after both restarts", timeout_s=120)
    assert claim_uid not in json.loads(dra_node.checkpoint.read_text())["claims"]


def test_a_tenant_cannot_carry_a_dra_grant_into_another_pod(dra_node, real_cluster, namespace):
    """A tenant reads the grant their claim's container was given (its environment) and writes it into a
    second pod, with no claim, and into a third that has a claim of its own: the hook refuses both
    (the grant's device nodes are not the second pod's; its nonce is bound to the first pod)."""
    show = PROBE + "; env | grep ^TESSERA_GRANT_; sleep 3600"
    real_cluster.apply([claim_template(namespace), claim_pod("owner", namespace, show)])
    running_with_probe(real_cluster, namespace, "owner")
    line = wait_for(lambda: [ln for ln in real_cluster.kubectl("logs", "-n", namespace, "owner").stdout.splitlines()
                             if ln.startswith("TESSERA_GRANT_")], "the owner's grant printed", timeout_s=60)[0]
    name, _, value = line.partition("=")
    real_cluster.apply([claim_pod("thief", namespace, PROBE, template="", env={name: value})])
    core = real_cluster.core_v1()

    def refused(pod_name):
        return wait_for(lambda: [e for e in events_for(core, namespace, pod_name)
                                 if e["reason"] == "Failed" and "tessera-hook" in e["message"]],
                        f"the hook's refusal of {pod_name}", timeout_s=120)[0]["message"]
    assert "/dev/nvidia" in refused("thief")
    real_cluster.kubectl("delete", "pod", "-n", namespace, "owner", "--wait=true", "--timeout=120s")
    real_cluster.apply([claim_pod("reuser", namespace, PROBE, env={name: value})])
    assert "is already bound to pod" in refused("reuser")


def test_the_exporter_attributes_a_claim_s_gpu_and_its_process_to_the_pod(dra_node, real_cluster, namespace):
    """The exporter, as deploy/ runs it, on a DRA pod: the GPU process and the device's series are the
    pod's through the hook's record of the container (it verified the claim's grant at start), with no
    device plugin involved."""
    from realcluster.nodeside import start_exporter
    from tessera.fakenvml.control import FaultInjector

    side = dra_node.side
    exporter, metrics = start_exporter(real_cluster, side)
    injector = FaultInjector(side.description)
    index, uuid = DRA_GPUS[0], gpu_uuid(side, DRA_GPUS[0])
    try:
        real_cluster.apply([claim_template(namespace),
                            claim_pod("trainer", namespace, PROBE + "; sleep 3600 & wait")])
        pod, _ = running_with_probe(real_cluster, namespace, "trainer")
        container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        pid = wait_for(lambda: host_pids_in(container_id, "sleep"), "the trainer's sleep process")[0]
        injector.set_processes(index, [(pid, 2048)])
        who = {"pod": "trainer", "namespace": namespace, "container": "main"}

        def attributed():
            samples = scrape(metrics)
            used = [v for n, labels, v in samples if n == "tessera_container_gpu_memory_used_bytes"
                    and labels.items() >= who.items() and labels.get("UUID", uuid) == uuid]
            device = [labels for n, labels, _ in samples if n == "DCGM_FI_DEV_FB_USED" and labels.get("UUID") == uuid
                      and labels.get("pod")]
            return used and any(used) and device and (used, device)

        used, device = wait_for(attributed, "the exporter's series for the claim's GPU process", timeout_s=60)
        assert used == [2048 * 2**20]
        assert {k: device[0][k] for k in who} == who
    finally:
        injector.set_processes(index, [])
        exporter.stop()


def test_two_mps_claims_share_one_gpu_s_capacity_and_a_third_waits_for_it(dra_node, real_cluster, namespace):
    """Consumable capacity: kube-scheduler adds up what the claims on the MPS GPU consume (cores 30 + 50
    of 100), keeps a third (40) pending until one ends, and each container gets exactly its share."""
    side = dra_node.side
    uuid = gpu_uuid(side, DRA_GPUS[1])
    real_cluster.apply([mps_template(namespace, "small", 30, 8), mps_template(namespace, "large", 50, 16),
                        mps_template(namespace, "third", 40, 8)])
    hold = PROBE + "; sleep 3600"
    real_cluster.apply([claim_pod("small", namespace, hold, template="small", run_as=MPS_USER),
                        claim_pod("large", namespace, hold, template="large", run_as=MPS_USER)])
    for name, cores, gib in (("small", 30, 8), ("large", 50, 16)):
        pod, probe = running_with_probe(real_cluster, namespace, name)
        (result,) = pod_claim(real_cluster, pod)["status"]["allocation"]["devices"]["results"]
        assert (result["device"], result["consumedCapacity"]) == (f"gpu-{DRA_GPUS[1]}",
                                                                  {"cores": str(cores), "memory": f"{gib}Gi"})
        assert probe.devices == expected_devices(side.description, [uuid])
        assert probe.env["NVIDIA_VISIBLE_DEVICES"] == probe.env["CUDA_VISIBLE_DEVICES"] == uuid
        assert probe.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(cores)
        assert probe.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={gib}G"
        pipe = side.mps_root / "pipe"
        assert probe.env["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe) and probe.mounts[str(pipe)] == str(pipe)
        assert probe.mounts["/dev/shm"] == str(side.mps_root / "shm") and probe.uid == MPS_USER
    real_cluster.apply([claim_pod("third", namespace, hold, template="third", run_as=MPS_USER)])
    core = real_cluster.core_v1()
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "third") if e["reason"] == "FailedScheduling"],
                       "kube-scheduler's FailedScheduling for the third share", timeout_s=120)
    assert "cannot allocate all claims" in refused[-1]["message"], refused
    real_cluster.kubectl("delete", "pod", "-n", namespace, "large", "--wait=true", "--timeout=120s")
    _, probe = running_with_probe(real_cluster, namespace, "third")
    assert probe.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"


def test_an_mps_share_s_container_must_run_as_the_mps_user(dra_node, real_cluster, namespace):
    real_cluster.apply([mps_template(namespace, "small", 10, 1),
                        claim_pod("root-client", namespace, PROBE, template="small")])
    core = real_cluster.core_v1()
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "root-client")
                                if e["reason"] == "Failed" and "tessera-hook" in e["message"]],
                       "the hook's refusal of an MPS client running as root", timeout_s=120)
    assert f"MPS clients must run as uid {MPS_USER}" in refused[0]["message"]


def mig_template(namespace: str, name: str, profile: str) -> dict:
    """A ResourceClaimTemplate for one MIG device of ``profile``, as a user writes it."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "mig", "exactly": {
                "deviceClassName": "mig.gpu.tessera.io", "selectors": [{"cel": {"expression":
                    f'device.attributes["{DRIVER}"].profile == "{profile}"'}}]}}]}}}}


def test_mig_claims_get_devices_made_for_them_where_they_fit_and_removed_after(dra_node, real_cluster, namespace):
    """Partitionable devices: kube-scheduler places a 3g.40gb and a 2g.20gb claim on the MIG GPU where their
    memory slices do not overlap (the GPU's counters), the driver makes each MIG device at prepare and the
    container gets exactly it; a 4g.40gb claim, which no longer fits beside them, waits; when the pods end
    the driver removes the devices, and the 4g.40gb claim then gets its own."""
    from tessera.fakenvml.state import FakeNode

    side = dra_node.side

    def on_gpu() -> dict[str, tuple[str, int]]:   # MIG UUID -> (profile, placement start), as NVML has it now
        gpu = FakeNode(load_description(side.description)).gpus[MIG_GPU]
        return {m.uuid: (m.placed.profile.name, m.placed.start) for m in gpu.mig}

    assert on_gpu() == {}
    hold = PROBE + "; sleep 3600"
    real_cluster.apply([mig_template(namespace, "three", "3g.40gb"), mig_template(namespace, "two", "2g.20gb"),
                        mig_template(namespace, "four", "4g.40gb"),
                        claim_pod("three", namespace, hold, template="three"),
                        claim_pod("two", namespace, hold, template="two")])
    spans = []
    for name, profile in (("three", "3g.40gb"), ("two", "2g.20gb")):
        pod, probe = running_with_probe(real_cluster, namespace, name)
        (result,) = pod_claim(real_cluster, pod)["status"]["allocation"]["devices"]["results"]
        start = int(result["device"].rsplit("-", 1)[1])
        assert result["device"] == f"gpu-{MIG_GPU}-mig-{profile.replace('.', '-')}-{start}"
        uuid = probe.env["NVIDIA_VISIBLE_DEVICES"]
        assert on_gpu()[uuid] == (profile, start) and probe.env["CUDA_VISIBLE_DEVICES"] == uuid
        assert probe.devices == expected_devices(side.description, [uuid])   # its GPU and its two capability nodes
        assert sum(1 for d in probe.devices if d.startswith("/dev/nvidia-caps/")) == 2
        spans.append(set(range(start, start + {"3g.40gb": 4, "2g.20gb": 2}[profile])))   # memory slices
    assert not spans[0] & spans[1] and len(on_gpu()) == 2
    real_cluster.apply([claim_pod("four", namespace, hold, template="four")])
    core = real_cluster.core_v1()
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "four") if e["reason"] == "FailedScheduling"],
                       "kube-scheduler's FailedScheduling for a MIG device that no longer fits", timeout_s=120)
    assert "cannot allocate all claims" in refused[-1]["message"], refused
    real_cluster.kubectl("delete", "pod", "-n", namespace, "three", "two", "--wait=true", "--timeout=120s")
    wait_for(lambda: len(on_gpu()) <= 1, "the ended pods' MIG devices removed at unprepare", timeout_s=120)
    _, probe = running_with_probe(real_cluster, namespace, "four")
    assert list(on_gpu().values()) == [("4g.40gb", 0)] and probe.env["NVIDIA_VISIBLE_DEVICES"] in on_gpu()
    real_cluster.kubectl("delete", "pod", "-n", namespace, "four", "--wait=true", "--timeout=120s")
    wait_for(lambda: on_gpu() == {}, "the last MIG device removed", timeout_s=120)


def test_a_timeslice_gpu_is_held_whole_by_two_claims_and_a_third_waits(dra_node, real_cluster, namespace):
    """Shared access: two claims of class timeslice.gpu.tessera.io hold the same GPU at once (replicas 2 in
    the node's config), each container gets the whole GPU under a gpu.shared grant the hook verified, and
    a third claim waits until one of them ends."""
    side = dra_node.side
    uuid = gpu_uuid(side, TIMESLICE_GPU)
    template = {"apiVersion": f"{GROUP}/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": "turns", "namespace": namespace},
                "spec": {"spec": {"devices": {"requests": [
                    {"name": "gpu", "exactly": {"deviceClassName": "timeslice.gpu.tessera.io"}}]}}}}
    hold = PROBE + "; sleep 3600"
    real_cluster.apply([template, claim_pod("first", namespace, hold, template="turns"),
                        claim_pod("second", namespace, hold, template="turns")])
    for name in ("first", "second"):
        pod, probe = running_with_probe(real_cluster, namespace, name)
        (result,) = pod_claim(real_cluster, pod)["status"]["allocation"]["devices"]["results"]
        assert (result["device"], result["consumedCapacity"]) == (f"gpu-{TIMESLICE_GPU}", {"replicas": "1"})
        assert probe.env["NVIDIA_VISIBLE_DEVICES"] == probe.env["CUDA_VISIBLE_DEVICES"] == uuid
        assert probe.devices == expected_devices(side.description, [uuid])
    assert DRA_CONFIG["timeslice_replicas"] == 2
    real_cluster.apply([claim_pod("third", namespace, hold, template="turns")])
    core = real_cluster.core_v1()
    refused = wait_for(lambda: [e for e in events_for(core, namespace, "third") if e["reason"] == "FailedScheduling"],
                       "kube-scheduler's FailedScheduling for a third claim on a GPU of two replicas", timeout_s=120)
    assert "cannot allocate all claims" in refused[-1]["message"], refused
    real_cluster.kubectl("delete", "pod", "-n", namespace, "first", "--wait=true", "--timeout=120s")
    _, probe = running_with_probe(real_cluster, namespace, "third")
    assert probe.env["NVIDIA_VISIBLE_DEVICES"] == uuid


def test_a_gpu_that_falls_off_the_bus_is_tainted_and_gets_no_claim_until_it_is_back(dra_node, real_cluster,
                                                                                    namespace):
    """Device health: the driver's whole GPU is lost (Xid 79, reads fail) on the fake node while a pod holds
    it: its device gets the driver's NoSchedule taint in the ResourceSlice, the kubelet shows it Unhealthy
    in the pod's status (the driver's health stream), and kube-scheduler allocates it to no new claim;
    once the GPU reads well again (a reset) the taint goes and the waiting pod gets it."""
    from tessera.fakenvml.control import FaultInjector

    injector = FaultInjector(dra_node.side.description)
    index = DRA_GPUS[0]

    def taints():
        devices = {d["name"]: d for s in node_slices(real_cluster) for d in s["spec"].get("devices") or []}
        return devices[f"gpu-{index}"].get("taints") or []

    assert taints() == []
    real_cluster.apply([claim_template(namespace), claim_pod("holder", namespace, PROBE + "; sleep 3600")])
    running_with_probe(real_cluster, namespace, "holder")
    core = real_cluster.core_v1()
    injector.lose_gpu(index)
    try:
        (taint,) = wait_for(taints, "the lost GPU's device tainted in the ResourceSlice", timeout_s=120)
        assert (taint["key"], taint["effect"]) == (f"{DRIVER}/unhealthy", "NoSchedule")
        assert taint["value"].startswith(("fatal-xid-79", "gpu-lost-from-the-bus"))

        def reported():   # the driver's health stream, as the kubelet shows it in the holder's status
            status = read_pod(core, namespace, "holder")["status"]["containerStatuses"][0]
            return [r for entry in status.get("allocatedResourcesStatus") or [] for r in entry.get("resources") or []
                    if r.get("health") == "Unhealthy"]
        (device,) = wait_for(reported, "the holder's status showing its device Unhealthy", timeout_s=120)
        assert f"gpu-{index}" in device["resourceID"]
        real_cluster.kubectl("delete", "pod", "-n", namespace, "holder", "--wait=true", "--timeout=120s")
        real_cluster.apply([claim_pod("waits", namespace, PROBE + "; sleep 3600")])
        refused = wait_for(lambda: [e for e in events_for(core, namespace, "waits")
                                    if e["reason"] == "FailedScheduling"],
                           "kube-scheduler's FailedScheduling for a claim whose only device is tainted", timeout_s=120)
        assert "cannot allocate all claims" in refused[-1]["message"], refused
        # a fatal Xid holds until a reset: the driver must have seen the GPU fail to read before it is back
        wait_for(lambda: (t := taints()) and "gpu-lost" in t[0]["value"], "the driver seeing the GPU unreadable",
                 timeout_s=120)
    finally:
        injector.restore_gpu(index)
    wait_for(lambda: taints() == [], "the taint removed once the GPU reads well again", timeout_s=120)
    _, probe = running_with_probe(real_cluster, namespace, "waits")
    assert probe.env["NVIDIA_VISIBLE_DEVICES"] == gpu_uuid(dra_node.side, index)


def test_a_plain_nvidia_gpu_pod_is_served_through_dra_on_the_real_kubelet(dra_node, real_cluster, namespace):
    """Extended-resource mapping end to end: the admin moves the node's whole GPUs from the device plugin to
    the driver (``draplugin.gpus``: the device plugin then advertises no ``nvidia.com/gpu``) and labels the
    node a DRA node; a pod written with ``limits: {nvidia.com/gpu: 1}`` and no claim passes the webhook and
    the extender, kube-scheduler allocates the claim it makes from deploy/'s class nvidia-gpu.tessera.io,
    the real kubelet prepares it through the driver, and the container starts with exactly that GPU past
    the hook. The node is put back as it was after."""
    import yaml

    side = dra_node.side
    core = real_cluster.core_v1()
    original = side.config.read_text()
    config = yaml.safe_load(original)
    config["draplugin"]["gpus"] = sorted({0, 1, *config["draplugin"]["gpus"]})
    whole = {gpu_uuid(side, i): f"gpu-{i}" for i in (0, 1, DRA_GPUS[0])}   # UUID -> the driver's device

    def device_plugin_gpus() -> str:
        return (core.read_node(NODE).status.allocatable or {}).get("nvidia.com/gpu", "0")

    try:
        side.config.write_text(yaml.safe_dump(config))
        side.restart_plugin()
        wait_for(lambda: device_plugin_gpus() == "0", "the device plugin advertising no nvidia.com/gpu", timeout_s=120)
        dra_node.restart()
        wait_for(lambda: {"gpu-0", "gpu-1"} <= {d["name"] for s in node_slices(real_cluster)
                                                for d in s["spec"].get("devices") or []},
                 "GPUs 0 and 1 in the driver's ResourceSlice", timeout_s=120)
        real_cluster.kubectl("label", "node", NODE, "tessera.io/dra-driver=true", "--overwrite")
        container = probe_container("main", {"nvidia.com/gpu": 1}, command=PROBE + "; sleep 3600")
        real_cluster.apply([node_pod("plain", namespace, [container])])
        pod, probe = running_with_probe(real_cluster, namespace, "plain")
        assert "resourceClaims" not in pod["spec"] and "claims" not in pod["spec"]["containers"][0]["resources"]
        status = pod["status"]["extendedResourceClaimStatus"]
        assert [(m["containerName"], m["resourceName"]) for m in status["requestMappings"]] == [
            ("main", "nvidia.com/gpu")]
        claim = kubernetes.client.CustomObjectsApi(real_cluster.client()).get_namespaced_custom_object(
            GROUP, "v1", namespace, "resourceclaims", status["resourceClaimName"])
        (result,) = claim["status"]["allocation"]["devices"]["results"]
        assert (result["driver"], result["pool"]) == (DRIVER, NODE)
        uuid = probe.env["NVIDIA_VISIBLE_DEVICES"]
        assert whole.get(uuid) == result["device"]
        assert probe.devices == expected_devices(side.description, [uuid])
        assert ANNOTATION_ASSIGNMENT not in (pod["metadata"].get("annotations") or {})   # no device-plugin path
        real_cluster.kubectl("delete", "pod", "-n", namespace, "plain", "--wait=true", "--timeout=120s")
    finally:
        real_cluster.kubectl("label", "node", NODE, "tessera.io/dra-driver-", check=False)
        side.config.write_text(original)
        dra_node.restart()
        side.restart_plugin()
        wait_for(lambda: all((core.read_node(NODE).status.allocatable or {}).get(k) == v for k, v in ALLOCATABLE.items()),
                 "the node's allocatable as before", timeout_s=180)
