"""A plain ``nvidia.com/gpu`` pod that kube-scheduler serves through Tessera's DRA driver (Kubernetes 1.37
extended-resource mapping) is not stood in the way of by the extender: its filter passes the nodes the
admin made DRA nodes (label ``tessera.io/dra-driver=true``, no device-plugin ``nvidia.com/gpu``), its bind
writes no assignment there, and only once kube-scheduler's claim is named in the pod's status. A
device-plugin node is filtered and bound exactly as before, labelled or not, and no other Tessera resource
passes a DRA node."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from extender_builders import pod as make_pod

from extender.cache import ClusterCache
from extender.dranodes import LABEL_DRA_DRIVER, dra_node
from extender.metrics import ExtenderMetrics
from extender.placement import choose_gpus
from extender.placement.policies import PolicyContext
from extender.verbs import ExtenderVerbs
from extender.webhook import PodAdmission
from tessera import ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY
from tessera.assignment import verify_assignment
from tessera.inventory import GpuInventory, NodeInventory

ONE_GPU = {"nvidia.com/gpu": "1"}
MPS = {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "4"}


def node_json(name: str, *, dra: bool = False, gpus: int = 0, mode: str = "exclusive",
              advertised: str | None = None) -> dict:
    """A Node as the watch sends it: ``gpus`` device-plugin GPUs in its inventory (advertised as
    ``nvidia.com/gpu`` when exclusive, unless ``advertised`` says otherwise), labelled for the DRA
    driver when ``dra``."""
    allocatable = {"cpu": "64", "memory": "256Gi", "pods": "110"}
    if advertised is None and gpus and mode == "exclusive":
        advertised = str(gpus)
    if advertised is not None:
        allocatable["nvidia.com/gpu"] = advertised
    meta: dict = {"name": name, "labels": {LABEL_DRA_DRIVER: "true"} if dra else {}, "annotations": {}}
    if gpus:
        meta["annotations"][ANNOTATION_INVENTORY] = NodeInventory(node=name, gpus=tuple(
            GpuInventory(index=i, uuid=f"GPU-{name}-{i}", model="A100", memory_mib=40960, sm_count=108, mode=mode)
            for i in range(gpus))).to_json()
    return {"metadata": meta, "status": {"allocatable": allocatable}}


def claimed(pod: dict, *containers: str) -> dict:
    """``pod`` with the status kube-scheduler writes before it binds a pod it served through DRA."""
    pod = copy.deepcopy(pod)
    pod["status"] = {"extendedResourceClaimStatus": {
        "resourceClaimName": f"{pod['metadata']['name']}-extended-resources-x7k2p",
        "requestMappings": [{"containerName": c, "resourceName": "nvidia.com/gpu",
                             "requestName": f"container-{i}-request-0"} for i, c in enumerate(containers)]}}
    return pod


class BindingApi:
    """The API server as bind sees it: the pod to read, and each Binding written (kept here)."""

    def __init__(self, pod: dict) -> None:
        self.pod, self.bindings = pod, []

    def get_pod(self, namespace: str, name: str) -> dict:
        return copy.deepcopy(self.pod)

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict | None = None) -> None:
        self.bindings.append((node, dict(annotations or {})))


class WatchedPods:
    """The extender's copy of pending pods from its watch, which may lag the API server."""

    def __init__(self, pod: dict) -> None:
        self.pod = pod

    def get(self, uid: str, namespace: str, name: str) -> dict | None:
        return copy.deepcopy(self.pod)


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def verbs_for(nodes: list[dict], api=None, key=None, pending=None) -> ExtenderVerbs:
    cache = ClusterCache(public_key=key.public_key() if key is not None else None)
    for node in nodes:
        cache.node_event("ADDED", node)
    return ExtenderVerbs(cache, api, key, PolicyContext(), ExtenderMetrics(), pending=pending)


def filtered(verbs: ExtenderVerbs, pod: dict, names: list[str]) -> dict:
    return json.loads(verbs.filter(json.dumps({"Pod": pod, "NodeNames": names}).encode()))


def bind(verbs: ExtenderVerbs, pod: dict, node: str) -> dict:
    meta = pod["metadata"]
    return verbs.bind(json.dumps({"PodName": meta["name"], "PodNamespace": meta["namespace"],
                                  "PodUID": meta["uid"], "Node": node}).encode())


FLEET = [node_json("dp", gpus=2), node_json("dra", dra=True), node_json("dra-zero", dra=True, advertised="0"),
         node_json("cpu"), node_json("dp-labelled", dra=True, gpus=1), node_json("mps", gpus=1, mode="mps")]
NAMES = [n["metadata"]["name"] for n in FLEET]


def test_which_nodes_serve_nvidia_gpu_through_dra():
    assert dra_node(node_json("a", dra=True)) and dra_node(node_json("b", dra=True, advertised="0"))
    assert not dra_node(node_json("c"))                            # not chosen by the admin
    assert not dra_node(node_json("d", dra=True, advertised="2"))  # its device plugin serves nvidia.com/gpu
    assert not dra_node(node_json("e", dra=True, advertised="x"))  # unreadable: not known to be 0
    labelled_false = node_json("f")
    labelled_false["metadata"]["labels"][LABEL_DRA_DRIVER] = "false"
    assert not dra_node(labelled_false)


def test_filter_passes_dra_nodes_for_whole_gpus_only():
    verbs = verbs_for(FLEET)
    result = filtered(verbs, make_pod(ONE_GPU, name="plain"), NAMES)
    assert result["NodeNames"] == ["dp", "dra", "dra-zero", "dp-labelled"]   # in the order given
    assert set(result["FailedNodes"]) | set(result.get("FailedAndUnresolvableNodes") or {}) == {"cpu", "mps"}
    # No other Tessera resource passes a DRA node: only nvidia.com/gpu is mapped to DRA.
    for limits in (MPS, {"nvidia.com/gpu.shared": "1"}, {"nvidia.com/mig-1g.10gb": "1"}):
        assert not {"dra", "dra-zero"} & set(filtered(verbs, make_pod(limits, name="other"), NAMES)["NodeNames"])
    mixed = make_pod(ONE_GPU, MPS, name="mixed")   # one container whole GPUs, one an MPS share
    assert not {"dra", "dra-zero"} & set(filtered(verbs, mixed, NAMES)["NodeNames"])


def test_a_device_plugin_node_is_filtered_as_before():
    """The device-plugin nodes' answers are the same with DRA nodes in the cluster as without, labelled
    or not, when they fit and when they are full."""
    device_plugin = [n for n in FLEET if n["metadata"]["name"] in ("dp", "dp-labelled", "mps", "cpu")]
    names = [n["metadata"]["name"] for n in device_plugin]
    for held in (0, 1):
        with_dra, without = verbs_for(FLEET), verbs_for(device_plugin)
        for verbs in (with_dra, without):
            for i in range(held):   # the labelled node's one GPU and one of dp's taken by running pods
                for node in ("dp", "dp-labelled"):
                    holder = make_pod(ONE_GPU, name=f"holder-{node}-{i}")
                    with verbs.cache.lock:
                        request = verbs._request(holder)
                        verbs.cache.assume(choose_gpus(request, verbs.cache.fleet[node], None, verbs.ctx), request,
                                           holder["metadata"]["uid"])
        pod = make_pod({"nvidia.com/gpu": "2"} if held else ONE_GPU, name="p")
        a, b = filtered(with_dra, pod, names), filtered(without, pod, names)
        assert a == b, (held, a, b)
    assert "dp-labelled" not in a["NodeNames"] and "dp" not in a["NodeNames"]


def test_bind_to_a_dra_node_writes_no_assignment_once_the_claim_is_named(key):
    pod = make_pod(ONE_GPU, name="plain")
    api = BindingApi(pod)
    verbs = verbs_for(FLEET, api, key)
    refused = bind(verbs, pod, "dra")["Error"]
    assert "extendedResourceClaimStatus" in refused and api.bindings == []
    assert "ns/plain" not in verbs.cache.placements()

    api.pod = claimed(pod, "c0")
    assert bind(verbs, pod, "dra") == {"Error": ""}
    assert api.bindings == [("dra", {})]   # no tessera.io/assignment: the DRA driver signs the claim's grant
    held = verbs.cache.placements()["ns/plain"]
    assert held.node == "dra" and not held.grants and held.memory_bytes == 0   # CPU and memory only
    assert verbs.cache.pending == {}      # no device plugin allocation to wait for
    # The watch delivers the bound pod: still no wait, so the next pod of its shape is not held back.
    bound = claimed(pod, "c0")
    bound["spec"]["nodeName"] = "dra"
    verbs.cache.pod_event("MODIFIED", bound)
    assert verbs.cache.pending == {}
    assert "dra" in filtered(verbs, make_pod(ONE_GPU, name="next"), ["dra"])["NodeNames"]


def test_bind_reads_the_claim_from_the_api_server_when_the_watch_lags(key):
    pod = make_pod(ONE_GPU, name="plain")
    api = BindingApi(claimed(pod, "c0"))
    verbs = verbs_for(FLEET, api, key, pending=WatchedPods(pod))   # the watch's copy has no status yet
    assert bind(verbs, pod, "dra") == {"Error": ""} and api.bindings == [("dra", {})]


def test_a_claim_that_leaves_a_container_out_is_refused(key):
    pod = make_pod(ONE_GPU, ONE_GPU, name="two")
    api = BindingApi(claimed(pod, "c0"))
    verbs = verbs_for(FLEET, api, key)
    assert "c1" in bind(verbs, pod, "dra")["Error"] and api.bindings == []


def test_a_device_plugin_node_is_bound_with_a_signed_assignment_even_with_a_claim_status(key):
    """A claim status (forged, or kube-scheduler's view older than the node's) never spares a pod the
    extender's books on a node whose device plugin serves nvidia.com/gpu, labelled or not."""
    pod = make_pod(ONE_GPU, name="plain")
    for node in ("dp", "dp-labelled"):
        api = BindingApi(claimed(pod, "c0"))
        verbs = verbs_for(FLEET, api, key)
        assert bind(verbs, pod, node) == {"Error": ""}
        (bound_node, annotations), = api.bindings
        doc = verify_assignment(annotations[ANNOTATION_ASSIGNMENT], pod["metadata"]["uid"], key.public_key(),
                                node=node)
        assert len(doc.containers["c0"]["nvidia.com/gpu"].device_ids) == 1
    # A node the admin labelled whose device plugin starts advertising nvidia.com/gpu leaves DRA at once.
    verbs = verbs_for(FLEET, BindingApi(claimed(pod, "c0")), key)
    verbs.cache.node_event("MODIFIED", node_json("dra", dra=True, advertised="1"))
    assert "dra" not in verbs.cache.dra_nodes
    assert "dra" not in filtered(verbs, pod, ["dra"])["NodeNames"]


def test_an_mps_pod_is_not_bound_to_a_dra_node(key):
    pod = make_pod(MPS, name="share")
    api = BindingApi(pod)
    assert bind(verbs_for(FLEET, api, key), pod, "dra")["Error"] and api.bindings == []


def test_preempt_keeps_the_dra_nodes_kube_scheduler_proposed():
    verbs = verbs_for(FLEET)
    body = {"Pod": make_pod(ONE_GPU, name="urgent"),
            "NodeNameToMetaVictims": {"dra": {"Pods": [{"UID": "victim"}], "NumPDBViolations": 0},
                                      "cpu": {"Pods": [{"UID": "victim2"}], "NumPDBViolations": 0}}}
    result = verbs.preempt(json.dumps(body).encode())
    assert set(result["NodeNameToMetaVictims"]) == {"dra"}


def test_the_webhook_routes_a_plain_gpu_pod_and_changes_nothing_else():
    """The webhook knows no node: a plain nvidia.com/gpu pod is routed to Tessera's scheduler (whose
    kube-scheduler then serves it through DRA or the device plugin, node by node) and left as written,
    whether or not the cluster has an MPS card."""
    pod = make_pod(ONE_GPU, name="plain")
    for cards in (None, (15, 40)):
        response = PodAdmission("tessera-scheduler", lambda: cards).review(
            {"kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "ns", "object": pod})
        assert response["allowed"] is True
        assert json.loads(base64.b64decode(response["patch"])) == [
            {"op": "add", "path": "/spec/schedulerName", "value": "tessera-scheduler"}]
