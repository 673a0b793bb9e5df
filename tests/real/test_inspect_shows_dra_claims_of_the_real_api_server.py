"""``tessera inspect`` against the real API server shows the GPUs a ResourceSlice of ``gpu.tessera.io``
publishes on a node, held by the ResourceClaims allocated to them as kube-scheduler records it (the
claim's status written through the status subresource: allocation results with an MPS share's
consumedCapacity, reservedFor a pod); and, for a caller the real authorizer forbids resource.k8s.io,
the device-plugin view with one line saying why DRA objects were not read.

No DRA driver runs here: the slice stands for one on a simulated node, and is deleted afterwards so
the other real-tier tests see that node as they left it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import kubernetes

from draplugin.devices import MODE_MPS, PublishedGpu, device_entry
from realtier import pod
from tessera.daemonproc import REPO_ROOT
from tessera.gpu import GpuInfo

GROUP, VERSION, DRIVER = "resource.k8s.io", "v1", "gpu.tessera.io"
NODE = "a100-mps"   # a simulated node of the real cluster; its device-plugin GPUs stay as they are
UUIDS = ("GPU-1e5e0000-0000-4000-8000-000000000010", "GPU-1e5e0000-0000-4000-8000-000000000011")


def _slice(name: str) -> dict:
    whole = PublishedGpu("gpu-10", GpuInfo(10, UUIDS[0], "NVIDIA A100-SXM4-80GB", minor_number=10,
                                           memory_total_mib=81920, sm_count=108))
    shared = PublishedGpu("gpu-11", GpuInfo(11, UUIDS[1], "NVIDIA A100-SXM4-40GB", minor_number=11,
                                            memory_total_mib=40960, sm_count=108), MODE_MPS)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceSlice", "metadata": {"name": name},
            "spec": {"driver": DRIVER, "nodeName": NODE, "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
                     "devices": [device_entry(whole, "550.54.15"), device_entry(shared, "550.54.15")]}}


def _claim(namespace: str, name: str, device_class: str, capacity: dict | None = None) -> dict:
    request: dict = {"deviceClassName": device_class}
    if capacity:
        request["capacity"] = {"requests": capacity}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": request}]}}}


def _allocate(objects, claim: dict, device: str, user: dict, consumed: dict | None = None) -> None:
    """Write the claim's allocation and reservation through the status subresource, as kube-scheduler."""
    result = {"request": "gpu", "driver": DRIVER, "pool": NODE, "device": device}
    if consumed:
        result.update(consumedCapacity=consumed, shareID=str(uuid.uuid4()))
    meta = claim["metadata"]
    claim["status"] = {
        "allocation": {"devices": {"results": [result]}, "nodeSelector": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}},
        "reservedFor": [{"resource": "pods", "name": user["metadata"]["name"], "uid": user["metadata"]["uid"]}]}
    objects.replace_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], "resourceclaims",
                                                    meta["name"], claim)


def _inspect(kubeconfig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tessera_cli.main", "inspect", "--kubeconfig", str(kubeconfig),
                           *args], capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=120)


def test_inspect_shows_a_dra_gpu_and_an_mps_share_allocated_to_claims(real_cluster, namespace):
    objects = kubernetes.client.CustomObjectsApi(real_cluster.client())
    core = real_cluster.core_v1()
    # The pod the claims are reserved for: never scheduled (no node matches), so it stays Pending and the
    # resourceclaim controller keeps the reservation.
    user = core.create_namespaced_pod(namespace, pod("user", {}, namespace=namespace,
                                                     node_selector={"tessera.io/nowhere": "true"}))
    user = real_cluster.client().sanitize_for_serialization(user)
    slice_name = f"{NODE}-{namespace}-inspect"
    objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", _slice(slice_name))
    try:
        whole = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "resourceclaims",
                                                        _claim(namespace, "whole", "gpu.tessera.io"))
        share = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "resourceclaims",
            _claim(namespace, "share", "mps.gpu.tessera.io", {"cores": "30", "memory": "10Gi"}))
        _allocate(objects, whole, "gpu-10", user)
        _allocate(objects, share, "gpu-11", user, {"cores": "30", "memory": "10Gi"})

        done = _inspect(real_cluster.kubeconfig, "-o", "json", "--node", NODE)
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        assert view["dra_problem"] == ""
        (node,) = view["nodes"]
        dra = {g["device"]: g for g in node["gpus"] if g["via"] == "dra"}
        assert {g["mode"] for g in node["gpus"] if g["via"] == "device-plugin"} == {"mps"}  # as before
        assert sorted(dra) == ["gpu-10", "gpu-11"]
        assert [(h["namespace"], h["claim"], h["pods"], h["core_pct"], h["memory_gib"])
                for h in dra["gpu-10"]["holders"]] == [(namespace, "whole", ["user"], 100, 80)]
        assert (dra["gpu-10"]["mode"], dra["gpu-10"]["uuid"], dra["gpu-10"]["free"]["whole"]) == (
            "exclusive", UUIDS[0], False)
        assert [(h["claim"], h["core_pct"], h["memory_gib"]) for h in dra["gpu-11"]["holders"]] == [("share", 30, 10)]
        assert (dra["gpu-11"]["mode"], dra["gpu-11"]["free"]["core_pct"], dra["gpu-11"]["free"]["memory_gib"]) == (
            "mps", 70, 30)
        assert f"{namespace}/user" in node["pods"]

        text = _inspect(real_cluster.kubeconfig, "--node", NODE)
        assert text.returncode == 0, text.stderr
        assert "DRA: 2 GPU(s) published through the DRA driver, held by 2 ResourceClaim(s)" in text.stdout
        rows = [line.split() for line in text.stdout.splitlines() if f"{namespace}/user" in line]
        assert [r[r.index(f"{namespace}/user") - 4:r.index(f"{namespace}/user")] for r in rows if "dra" in r] == [
            ["10", "dra", "exclusive", "ok"], ["11", "dra", "mps", "ok"]]
        assert any("claim share (gpu)" in line and "core 70%, 30 GiB" in line for line in text.stdout.splitlines())
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, "resourceslices", slice_name)


def test_a_caller_forbidden_resource_k8s_io_gets_the_device_plugin_view_and_one_line(real_cluster, namespace):
    """The namespace's default ServiceAccount may list nodes and pods, nothing of resource.k8s.io."""
    role = f"inspect-without-dra-{namespace}"
    real_cluster.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
         "rules": [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]}])
    try:
        kubeconfig = real_cluster.service_account_kubeconfig(namespace, "default")
        real_cluster.wait_for(lambda: "cannot list" not in _inspect(kubeconfig, "--node", NODE).stderr,
                              timeout_s=30, interval_s=0.5, what="the binding in force (nodes and pods listed)")
        done = _inspect(kubeconfig, "--node", NODE)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        said = [line for line in done.stdout.splitlines() if "DRA" in line]
        assert len(said) == 1, done.stdout
        assert said[0].startswith("DRA objects not read: cannot list resourceslices.resource.k8s.io: 403 ")
        assert "forbidden" in said[0] and f"system:serviceaccount:{namespace}:default" in said[0]
        view = json.loads(_inspect(kubeconfig, "--node", NODE, "-o", "json").stdout)
        assert view["dra_problem"] == said[0]
        assert {g["via"] for g in view["nodes"][0]["gpus"]} == {"device-plugin"}
    finally:
        real_cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found", check=False)
