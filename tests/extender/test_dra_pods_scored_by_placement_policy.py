"""Pods whose GPUs come from Tessera's DRA claims get node scores from the placement policy
(``extender.drascoring``): each DRA node is read from its ``gpu.tessera.io`` ResourceSlice and the claims
allocated on it, the pod from its claims; the webhook routes such pods to tessera-scheduler.

Objects are built as the real ones are: slices by the DRA driver's own ``device_entry``/``wanted_slice``,
claims and templates as kube-apiserver stores them (``status.allocation.devices.results`` with
``consumedCapacity``)."""

from __future__ import annotations

import json

import pytest

from draplugin.devices import PublishedGpu, device_entry
from tessera.dradevices import DRIVER_NAME, MODE_EXCLUSIVE, MODE_MPS, MODE_TIMESLICE
from draplugin.slices import wanted_slice
from extender.cache import ClusterCache
from extender.drabook import DraBook
from extender.drascoring import DraScorer, NotScored, dra_pod_request
from extender.informer import Informer
from extender.metrics import ExtenderMetrics
from extender.placement import Fleet, NodeState, PolicyContext
from extender.placement.fragmentation import ShapeBook
from extender.verbs import ExtenderVerbs
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
    ([{"name": "nic", "exactly": {"deviceClassName": "rdma.example.com"}}], "no claim"),
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


def test_the_opt_out_label_holds_whichever_webhook_entry_sends_the_pod(cluster):
    """A pod labelled tessera.io/dra-scoring=off that also reaches the webhook for another reason (a
    tessera.io/policy annotation) is not routed."""
    book, _ = cluster
    admission = PodAdmission("tessera-scheduler", lambda: None, dra_asks=book.asks_tessera)
    p = pod()
    p["metadata"].update(labels={"tessera.io/dra-scoring": "off"}, annotations={"tessera.io/policy": "binpack"})
    answer = admission.review({"operation": "CREATE", "kind": {"kind": "Pod"}, "namespace": "team", "object": p})
    assert answer["allowed"] and "patch" not in answer


def test_each_request_a_container_names_is_read_once():
    """One claim, two requests, each container naming its own: both are read, none twice."""
    book = DraBook()
    book.template_event("ADDED", template("pair", [share("a", 30, 12), share("b", 20, 8)]))
    p = pod(claims={"gpu": "pair"})
    main = p["spec"]["containers"][0]
    main["resources"]["claims"] = [{"name": "gpu", "request": "a"}]
    p["spec"]["containers"].append({"name": "side", "image": "cuda", "resources": {
        "claims": [{"name": "gpu", "request": "b"}, {"name": "gpu", "request": "a"}]}})
    asks = {c.name: c.ask for c in dra_pod_request(p, book).containers}
    assert (asks["main"].core, asks["side"].core) == (30, 20)


def test_admin_access_results_hold_nothing(cluster):
    book, base = cluster
    monitor = claim("monitor", [share()], [{**held("node-b", "gpu-0"), "adminAccess": True}])
    book.claim_event("ADDED", monitor)
    assert book.holdings("node-b") == []


def test_an_unchanged_claim_changes_no_node(cluster):
    book, _ = cluster
    before = book.node_version("node-a")
    relabelled = claim("held", [share(cores=70, gib=28)], [held("node-a", "gpu-0", 70, 28)])
    relabelled["metadata"]["labels"] = {"touched": "1"}
    book.claim_event("MODIFIED", relabelled)
    assert book.node_version("node-a") == before


def test_other_drivers_claims_are_not_kept(cluster):
    book, _ = cluster
    book.claim_event("ADDED", claim("nic", [{"name": "nic", "exactly": {"deviceClassName": "rdma.example.com"}}]))
    assert book.claim("team", "nic") is None


def test_a_replaced_base_node_is_read_again(cluster):
    """The cache replaces a node's state on each Node update (a new object at version 0): the scorer
    rebuilds from the new one, never keeps the old one's CPU."""
    book, base = cluster
    scorer = DraScorer(book)
    scorer._refresh(base, ["node-a"])
    assert scorer.fleet["node-a"].cpu_alloc == 16_000
    for _ in range(3):   # replaced without a scoring call between: an address may be reused
        base.add(NodeState("node-a", [], 4_000, 64 << 30))
    scorer._refresh(base, ["node-a"])
    assert scorer.fleet["node-a"].cpu_alloc == 4_000


def test_a_pool_being_rewritten_or_repeating_a_device_is_read_safely():
    book = DraBook()
    first = slice_of("n", 2)
    first["spec"]["pool"]["resourceSliceCount"] = 2   # its second slice not written yet
    book.slice_event("ADDED", first)
    assert book.devices("n") == []
    second = slice_of("n", 2)
    second["metadata"]["name"] = "n-second"
    second["spec"]["pool"]["resourceSliceCount"] = 2
    book.slice_event("ADDED", second)
    assert [d["name"] for d in book.devices("n")] == ["gpu-0", "gpu-1"]   # the same names once


def test_a_node_with_nothing_left_is_forgotten():
    book = DraBook()
    book.slice_event("ADDED", slice_of("gone", 1))
    assert book.node_version("gone")
    book.slice_event("DELETED", {"metadata": {"name": slice_of("gone", 1)["metadata"]["name"]}})
    assert book.node_version("gone") == 0 and "gone" not in book._node_versions


def test_the_informer_waits_for_dra_to_be_served(monkeypatch):
    """An API server without resource.k8s.io/v1 (404) is asked again later, never given up on: DRA
    turned on afterwards is followed without an extender restart."""
    from kubernetes.client.rest import ApiException

    import extender.informer as informer_module
    from extender.cache import ClusterCache
    from extender.informer import Informer

    class Api:
        calls = 0

        def list(self, kind):
            Api.calls += 1
            if Api.calls < 3:
                raise ApiException(status=404, reason="Not Found")
            return [], "7"

    monkeypatch.setattr(informer_module, "DRA_UNSERVED_RETRY_S", 0.01)
    informer = Informer(Api(), ClusterCache(), dra=DraBook())
    assert informer._first_dra_list("resourceslices") == ([], "7") and Api.calls == 3
    informer._stop.set()
    Api.calls = 0
    assert informer._first_dra_list("resourceslices") is None   # stopped: no list, no wait


def test_a_relist_forgets_what_was_deleted_while_no_watch_ran(cluster):
    """After a watch gap (410 Gone), the informer's fresh lists replace what the book holds: a slice, a
    claim and a template deleted meanwhile are gone, those still listed stay."""
    book, _ = cluster
    informer = Informer(api=None, cache=ClusterCache(), dra=book)
    book.claim_event("ADDED", claim("also-held", [share(cores=10, gib=4)], [held("node-b", "gpu-1", 10, 4)]))
    informer._relist("resourceslices", [slice_of("node-b", 2)])                      # node-a's slice deleted
    informer._relist("resourceclaims", [claim("also-held", [share(cores=10, gib=4)],
                                              [held("node-b", "gpu-1", 10, 4)])])  # "held" deleted
    informer._relist("resourceclaimtemplates", [])                                  # "share" deleted
    assert (book.devices("node-a"), [h.claim_uid for h in book.holdings("node-b")]) == ([], ["uid-also-held"])
    assert book.claim("team", "held") is None and book.claim("team", "also-held") is not None
    assert book.template("team", "share") is None


def test_claims_are_read_by_name_and_from_the_claim_made_of_a_template(cluster):
    """A pod naming a claim is routed and read by that claim; a pod of a template is read from the claim
    its status says was made of it, once the book has that claim (the template before)."""
    book, _ = cluster
    book.claim_event("ADDED", claim("mine", [share(cores=20, gib=8)]))
    book.claim_event("ADDED", claim("p-gpu-x7k2p", [share(cores=40, gib=16)]))
    admission = PodAdmission("tessera-scheduler", lambda: None, dra_asks=book.asks_tessera)
    named = pod()
    named["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimName": "mine"}]
    answer = admission.review({"operation": "CREATE", "kind": {"kind": "Pod"}, "namespace": "team", "object": named})
    assert "patch" in answer
    assert dra_pod_request(named, book).asks[0].core == 20
    made = {**pod(), "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-x7k2p"}]}}
    assert dra_pod_request(made, book).asks[0].core == 40     # the claim made of the template
    made["status"]["resourceClaimStatuses"][0]["resourceClaimName"] = "not-seen-yet"
    assert dra_pod_request(made, book).asks[0].core == 30     # the template, until the claim is seen


class CountedShapes(ShapeBook):
    """The learned model, counting the pods it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def observe(self, request) -> None:
        self.shown.append(request.name)
        super().observe(request)


def prioritize_dra(verbs: ExtenderVerbs, p: dict, names=("node-a", "node-b", "cpu-only")) -> dict[str, int]:
    answer = json.loads(verbs.prioritize_dra(json.dumps({"Pod": p, "NodeNames": list(names)}).encode()))
    return {entry["Host"]: entry["Score"] for entry in answer}


def test_the_dra_entry_scores_a_claims_pod_and_leaves_the_others_to_prioritize(cluster):
    """kube-scheduler's second extender entry (prioritize-dra): a pod of Tessera claims gets the policy's
    scores, its shape counted once in the learned model however often it is asked; a pod of Tessera's
    extended resources, or of no claims, gets no scores from it."""
    book, base = cluster
    cache = ClusterCache()
    for name in ("node-a", "node-b", "cpu-only"):
        cache.fleet.add(base[name])
    shapes = CountedShapes()
    verbs = ExtenderVerbs(cache, None, None, PolicyContext(shapes=shapes, default_policy="fragmentation"),
                          ExtenderMetrics(), dra=DraScorer(book))
    got = prioritize_dra(verbs, pod())
    assert got["node-a"] > got["node-b"] and got["cpu-only"] == 0, got
    assert prioritize_dra(verbs, pod()) == got
    assert shapes.shown == ["team/p"]
    extended = pod(name="mps")
    extended["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/mps-core": "30",
                                                                "nvidia.com/mps-memory": "12"}
    assert prioritize_dra(verbs, extended) == {}
    no_claims = pod(name="plain")
    del no_claims["spec"]["resourceClaims"]
    assert prioritize_dra(verbs, no_claims) == {}
    assert prioritize_dra(verbs, pod(name="unseen", claims={"gpu": "never-created"})) == {}
    assert shapes.shown == ["team/p"]
    off = ExtenderVerbs(cache, None, None, PolicyContext(), ExtenderMetrics())
    assert prioritize_dra(off, pod()) == {}
