"""Pods whose GPUs come from Tessera's DRA claims get node scores from the placement policy
(``extender.drascoring``): each DRA node is read from its ``gpu.tessera.io`` ResourceSlice and the claims
allocated on it, the pod from its claims; the webhook routes such pods to tessera-scheduler.

Objects are built as the real ones are: slices by the DRA driver's own ``device_entry``/``wanted_slice``,
claims and templates as kube-apiserver stores them (``status.allocation.devices.results`` with
``consumedCapacity``)."""

from __future__ import annotations

import pytest

from draplugin.devices import PublishedGpu, device_entry
from tessera.dradevices import DRIVER_NAME, MODE_EXCLUSIVE, MODE_MPS, MODE_TIMESLICE
from draplugin.slices import wanted_slice
from extender.drabook import DraBook
from extender.drascoring import DraScorer, NotScored, dra_pod_request
from extender.placement import Fleet, NodeState, PolicyContext
from extender.webhook import PodAdmission
from tessera.gpu import GpuInfo
from tessera.podrequest import KIND_GPU, KIND_MPS, KIND_TIMESLICE

GIB_MIB = 1024


def node_obj(name: str) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}"}}


def slice_of(node: str, gpus: int, mode: str = MODE_MPS, memory_gib: int = 40, replicas: int = 0) -> dict:
    devices = [device_entry(PublishedGpu(f"gpu-{i}", GpuInfo(i, f"GPU-{node}-{i}", "NVIDIA A100-SXM4-40GB",
                                                              minor_number=i, memory_total_mib=memory_gib * GIB_MIB,
                                                              sm_count=108), mode, replicas), "550.54.15")
               for i in range(gpus)]
    return wanted_slice(node_obj(node), DRIVER_NAME, devices, 1)


def claim(name: str, requests: list[dict], results: list[dict] | None = None, namespace: str = "team") -> dict:
    doc = {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
           "spec": {"devices": {"requests": requests}}}
    if results is not None:
        doc["status"] = {"allocation": {"devices": {"results": results}}}
    return doc


def share(name: str = "gpu", cores: int = 30, gib: int = 12, device_class: str = f"mps.{DRIVER_NAME}") -> dict:
    return {"name": name, "exactly": {"deviceClassName": device_class,
                                      "capacity": {"requests": {"cores": str(cores), "memory": f"{gib}Gi"}}}}


def held(node: str, device: str, cores: int | None = None, gib: int | None = None) -> dict:
    result = {"request": "gpu", "driver": DRIVER_NAME, "pool": node, "device": device}
    if cores is not None:
        result["consumedCapacity"] = {"cores": str(cores), "memory": f"{gib}Gi"}
    return result


def pod(name: str = "p", claims: dict[str, str] | None = None, namespace: str = "team", **extra) -> dict:
    claims = claims or {"gpu": "share"}
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-pod-{name}", "resourceVersion": "1",
                         **extra},
            "spec": {"resourceClaims": [{"name": n, "resourceClaimTemplateName": t} for n, t in claims.items()],
                     "containers": [{"name": "main", "image": "cuda", "resources": {
                         "requests": {"cpu": "1", "memory": "1Gi"}, "claims": [{"name": n} for n in claims]}}]}}


def template(name: str, requests: list[dict], namespace: str = "team") -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"spec": {"devices": {"requests": requests}}}}


@pytest.fixture
def cluster():
    """Two identical DRA nodes of two 40 GB MPS GPUs; on node-a one GPU has 70 cores and 28 GiB held."""
    book = DraBook()
    for node in ("node-a", "node-b"):
        book.slice_event("ADDED", slice_of(node, 2))
    book.claim_event("ADDED", claim("held", [share(cores=70, gib=28)], [held("node-a", "gpu-0", 70, 28)]))
    book.template_event("ADDED", template("share", [share(cores=30, gib=12)]))
    base = Fleet([NodeState(n, [], 16_000, 64 << 30) for n in ("node-a", "node-b", "cpu-only")])
    return book, base


def scores(book, base, p, names=("node-a", "node-b", "cpu-only")) -> dict[str, int]:
    request = dra_pod_request(p, book)
    return dict(DraScorer(book).scores(request, base, PolicyContext(default_policy="fragmentation"), list(names)))


def test_a_share_goes_where_it_fills_a_gpu(cluster):
    book, base = cluster
    got = scores(book, base, pod())
    assert got["node-a"] == 10 and got["node-b"] < 10, got   # 30 cores fill node-a's GPU 0 exactly
    assert got["cpu-only"] == 0, got                          # no Tessera devices: not a DRA node


def test_a_share_that_fits_nowhere_on_a_node_scores_it_0(cluster):
    book, base = cluster
    book.claim_event("ADDED", claim("rest", [share(cores=30, gib=12)], [held("node-a", "gpu-0", 30, 12)]))
    book.claim_event("ADDED", claim("whole", [share()], [held("node-a", "gpu-1")]))  # default: all of gpu-1
    book.template_event("ADDED", template("share", [share(cores=10, gib=4)]))
    got = scores(book, base, pod())
    assert got["node-a"] == 0 and got["node-b"] == 10, got


def test_claims_deleted_give_their_capacity_back(cluster):
    book, base = cluster
    scorer, ctx = DraScorer(book), PolicyContext(default_policy="fragmentation")
    request = dra_pod_request(pod(), book)
    assert dict(scorer.scores(request, base, ctx, ["node-a", "node-b"]))["node-a"] == 10
    book.claim_event("DELETED", claim("held", []))
    got = dict(scorer.scores(request, base, ctx, ["node-a", "node-b"]))
    assert got["node-a"] == got["node-b"], got   # the same scorer, rebuilt: the nodes are equal again


def test_an_unhealthy_gpu_takes_no_share(cluster):
    book, base = cluster
    tainted = slice_of("node-a", 2)
    tainted["spec"]["devices"][0]["taints"] = [{"key": f"{DRIVER_NAME}/unhealthy", "value": "xid-79",
                                                "effect": "NoSchedule"}]
    tainted["spec"]["devices"][1]["taints"] = [{"key": f"{DRIVER_NAME}/unhealthy", "value": "xid-79",
                                                "effect": "NoSchedule"}]
    book.slice_event("MODIFIED", tainted)
    assert scores(book, base, pod())["node-a"] == 0


def test_only_the_newest_pool_generation_counts(cluster):
    book, base = cluster
    newer = slice_of("node-b", 1)
    newer["metadata"]["name"] = "node-b-newer"
    newer["spec"]["pool"]["generation"] = 2
    book.slice_event("ADDED", newer)
    assert [d["name"] for d in book.devices("node-b")] == ["gpu-0"]


def test_claims_read_as_the_device_plugins_request(cluster):
    book, _ = cluster
    book.template_event("ADDED", template("two-whole", [{"name": "gpu", "exactly": {
        "deviceClassName": f"mps.{DRIVER_NAME}", "count": 2}}]))
    book.template_event("ADDED", template("exclusive", [{"name": "gpu", "exactly": {
        "deviceClassName": DRIVER_NAME, "count": 3}}]))
    book.template_event("ADDED", template("sliced", [{"name": "gpu", "exactly": {
        "deviceClassName": f"timeslice.{DRIVER_NAME}"}}]))
    ask = dra_pod_request(pod(), book).asks[0]
    assert (ask.kind, ask.core, ask.memory_gib) == (KIND_MPS, 30, 12)
    ask = dra_pod_request(pod(claims={"gpu": "two-whole"}), book).asks[0]
    assert ask.count == 2 and ask.cores == 200
    ask = dra_pod_request(pod(claims={"gpu": "exclusive"}), book).asks[0]
    assert (ask.kind, ask.count) == (KIND_GPU, 3)
    ask = dra_pod_request(pod(claims={"gpu": "sliced"}), book).asks[0]
    assert (ask.kind, ask.count) == (KIND_TIMESLICE, 1)


@pytest.mark.parametrize("requests, why", [
    ([{"name": "gpu", "exactly": {"deviceClassName": f"mig.{DRIVER_NAME}"}}], "not scored"),
    ([{"name": "gpu", "exactly": {"deviceClassName": f"mps.{DRIVER_NAME}",
                                  "capacity": {"requests": {"cores": "30"}}}}], "cores and memory"),
    ([{"name": "gpu", "exactly": {"deviceClassName": f"mps.{DRIVER_NAME}", "allocationMode": "All"}}], "exact count"),
    ([{"name": "nic", "exactly": {"deviceClassName": "rdma.example.com"}}], "no container"),
    ([{"name": "gpu", "exactly": {"deviceClassName": f"mps.{DRIVER_NAME}",
                                  "capacity": {"requests": {"cores": "lots", "memory": "1Gi"}}}}], None),
])
def test_claims_it_does_not_model_are_not_scored(cluster, requests, why):
    book, _ = cluster
    book.template_event("ADDED", template("odd", requests))
    with pytest.raises(NotScored, match=why):
        dra_pod_request(pod(claims={"gpu": "odd"}), book)


def test_an_unknown_template_is_not_scored(cluster):
    book, _ = cluster
    with pytest.raises(NotScored):
        dra_pod_request(pod(claims={"gpu": "never-created"}), book)


@pytest.mark.parametrize("garbage", [
    {"metadata": {"name": "x", "namespace": "team"}, "spec": "not a spec", "status": {"allocation": 7}},
    {"metadata": {"name": "x", "namespace": "team"}, "spec": {"devices": {"requests": [None, 3, {"exactly": []}]}},
     "status": {"allocation": {"devices": {"results": [None, {"driver": DRIVER_NAME, "pool": "node-a",
                                                              "device": "gpu-1", "consumedCapacity": {
                                                                  "cores": "-5", "memory": "a lot"}}]}}}},
    {"metadata": {"name": "x", "namespace": "team"},
     "status": {"allocation": {"devices": {"results": [{"driver": DRIVER_NAME, "pool": "node-a", "device": "gpu-1",
                                                        "consumedCapacity": {"cores": "900", "memory": "1Gi"}}]}}}},
])
def test_hostile_claims_never_break_scoring(cluster, garbage):
    """A tenant writes claims; whatever one holds, scoring answers (the holding it cannot apply is skipped)."""
    book, base = cluster
    book.claim_event("ADDED", garbage)
    got = scores(book, base, pod())
    assert set(got) == {"node-a", "node-b", "cpu-only"} and all(0 <= s <= 10 for s in got.values())


def test_exclusive_and_timeslice_gpus_are_read_with_their_holdings():
    book = DraBook()
    book.slice_event("ADDED", slice_of("excl", 2, MODE_EXCLUSIVE))
    book.slice_event("ADDED", slice_of("ts", 1, MODE_TIMESLICE, replicas=2))
    book.claim_event("ADDED", claim("one", [{"name": "gpu", "exactly": {"deviceClassName": DRIVER_NAME}}],
                                    [held("excl", "gpu-0")]))
    book.claim_event("ADDED", claim("two", [{"name": "gpu", "exactly": {"deviceClassName": f"timeslice.{DRIVER_NAME}"}}],
                                    [held("ts", "gpu-0"), held("ts", "gpu-0")]))
    base = Fleet([NodeState(n, [], 8_000, 32 << 30) for n in ("excl", "ts")])
    scorer = DraScorer(book)
    scorer._refresh(base, ["excl", "ts"])
    assert scorer.fleet["excl"].excl_free == 1
    assert scorer.fleet["ts"].ts_free == 0   # both replicas held: a time-sliced pod fits nowhere there


def test_the_webhook_routes_pods_whose_claims_ask_tessera(cluster):
    book, _ = cluster
    book.template_event("ADDED", template("nic", [{"name": "nic", "exactly": {"deviceClassName": "rdma.example.com"}}]))
    admission = PodAdmission("tessera-scheduler", lambda: None, dra_asks=book.asks_tessera)

    def routed(p: dict) -> bool:
        answer = admission.review({"operation": "CREATE", "kind": {"kind": "Pod"}, "namespace": p["metadata"]["namespace"],
                                   "object": p})
        assert answer["allowed"]
        return "patch" in answer

    assert routed(pod())                                   # template asks mps.gpu.tessera.io
    assert not routed(pod(claims={"nic": "nic"}))          # another driver's class
    assert not routed(pod(claims={"gpu": "unseen"}))       # a template the extender has not seen
    assert not routed(pod(namespace="other"))              # the same template name in another namespace
    other = pod()
    other["spec"]["schedulerName"] = "volcano"
    assert not routed(other)                               # a pod naming its own scheduler keeps it
