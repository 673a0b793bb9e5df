"""``tessera inspect`` shows the GPUs Tessera's DRA driver publishes beside the device plugin's: each
ResourceSlice device of ``gpu.tessera.io`` as a GPU of its node, held by the ResourceClaims kube-scheduler
allocated to it, with what MPS shares consumed and what is left. Where resource.k8s.io cannot be read it
says so in one line; malformed objects are shown as far as they can be, never a traceback.

Dict fixtures, as the API server's JSON gives them; the slices are written by the driver's own code.
"""

from __future__ import annotations

import copy
import json
import random
from types import SimpleNamespace

import kubernetes
import pytest

from draplugin.devices import MODE_MPS, PublishedGpu, device_entry
from draplugin.slices import wanted_slice
from tessera.gpu import GpuInfo
from tessera_cli.clusterview import NodeView
from tessera_cli.inspect import gather
from tessera_cli.inspect_dra import dra_gpus
from tessera_cli.inspect_table import _gpu_rows, render_json, render_text

DRIVER = "gpu.tessera.io"
NODE = "dra-node"
UUID0, UUID1 = "GPU-dddddddd-0000-0000-0000-000000000000", "GPU-dddddddd-0000-0000-0000-000000000001"


def _slice(node: str = NODE, generation: int = 1) -> dict:
    whole = PublishedGpu("gpu-0", GpuInfo(0, UUID0, "NVIDIA A100-SXM4-80GB", minor_number=0,
                                          memory_total_mib=81920, sm_count=108))
    shared = PublishedGpu("gpu-1", GpuInfo(1, UUID1, "NVIDIA A100-SXM4-40GB", minor_number=1,
                                           memory_total_mib=40960, sm_count=108), MODE_MPS)
    devices = [device_entry(whole, "550.54.15"), device_entry(shared, "550.54.15")]
    return wanted_slice({"metadata": {"name": node, "uid": "u-" + node}}, DRIVER, devices, generation)


def _claim(name: str, device: str, pods: tuple[str, ...] = (), consumed: dict | None = None,
           namespace: str = "team", driver: str = DRIVER, pool: str = NODE) -> dict:
    result = {"request": "gpu", "driver": driver, "pool": pool, "device": device}
    if consumed is not None:
        result.update(consumedCapacity=consumed, shareID=f"share-{name}")
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": DRIVER}}]}},
            "status": {"allocation": {"devices": {"results": [result]}},
                       "reservedFor": [{"resource": "pods", "name": p, "uid": f"uid-{p}"} for p in pods]}}


CLAIMS = [
    _claim("whole", "gpu-0", ("trainer",)),
    _claim("share-a", "gpu-1", ("infer-a",), {"cores": "30", "memory": "10Gi"}),
    _claim("share-b", "gpu-1", ("infer-b", "infer-c"), {"cores": "20", "memory": "8Gi"}),
    {"metadata": {"name": "pending", "namespace": "team"}, "status": {}},              # not allocated yet
    _claim("elsewhere", "gpu-0", ("other",), driver="gpu.nvidia.com"),                # another driver's
]


def test_each_published_gpu_is_held_by_its_claims_with_what_is_left():
    found = dra_gpus([_slice()], CLAIMS)
    assert found.notes == {}
    whole, shared = found.by_node[NODE]
    assert (whole.index, whole.uuid, whole.mode, whole.via, whole.device, whole.memory_gib) == (
        0, UUID0, "exclusive", "dra", "gpu-0", 80)
    assert [(h.claim, h.pods, h.kind, h.core_pct, h.memory_gib) for h in whole.holders] == [
        ("whole", ("trainer",), "gpu", 100, 80)]
    assert (whole.free.whole, whole.free.cores) == (False, 0.0)
    assert (shared.mode, shared.memory_gib, shared.model) == ("mps", 40, "NVIDIA A100-SXM4-40GB")
    assert [(h.claim, h.pods, h.core_pct, h.memory_gib, h.share_id) for h in shared.holders] == [
        ("share-a", ("infer-a",), 30, 10, "share-share-a"), ("share-b", ("infer-b", "infer-c"), 20, 8, "share-share-b")]
    assert (shared.free.core_pct, shared.free.memory_gib, shared.free.cores, shared.free.whole) == (50, 22, 50.0, False)


def test_an_unheld_gpu_is_free_whole_and_older_generations_are_not_read():
    stale = _slice(generation=1)
    stale["spec"]["devices"] = stale["spec"]["devices"][:1]
    found = dra_gpus([stale, _slice(generation=2)], [])
    assert found.notes == {}
    whole, shared = found.by_node[NODE]
    assert (whole.free.whole, whole.free.cores) == (True, 100.0)
    assert (shared.free.core_pct, shared.free.memory_gib, shared.free.whole) == (100, 40, True)


def test_claims_on_devices_no_slice_publishes_are_notes_not_holders():
    found = dra_gpus([_slice()], [_claim("ghost", "gpu-9", ("p",)), _claim("lost", "gpu-0", pool="gone-node")])
    assert all(not g.holders for g in found.by_node[NODE])
    assert "team/ghost: allocated device gpu-9" in found.notes[NODE][0]
    assert "gone-node" in found.notes["gone-node"][0]


HOSTILE_CONSUMED = [{"cores": "1e999999999", "memory": "1e999999999"}, {"cores": True, "memory": None},
                    {"cores": "-30", "memory": "-1Gi"}, {"cores": "9223372036854775807", "memory": "8Ei"}, "x", [],
                    {"cores": "90", "memory": "50Gi"}, {"cores": "500", "memory": "1Gi"}]


@pytest.mark.parametrize("consumed", HOSTILE_CONSUMED, ids=range(len(HOSTILE_CONSUMED)))
def test_hostile_consumed_capacity_shows_the_claim_and_never_frees_more_than_the_gpu(consumed):
    found = dra_gpus([_slice()], [_claim("odd", "gpu-1", ("p",), consumed)])
    shared = found.by_node[NODE][1]
    assert [h.claim for h in shared.holders] == ["odd"]
    assert 0 <= shared.free.core_pct <= 100 and 0 <= shared.free.memory_gib <= 40
    assert not shared.free.whole


MALFORMED = [None, "claim", 7, [], {}, {"status": []}, {"status": {"allocation": "yes"}},
             {"status": {"allocation": {"devices": {"results": "abc"}}}},
             {"status": {"allocation": {"devices": {"results": [None, 3, {"driver": DRIVER, "pool": 5,
                                                                          "device": ["gpu-0"]}]}}}},
             {"metadata": "x", "status": {"allocation": {"devices": {"results": [
                 {"driver": DRIVER, "pool": NODE, "device": "gpu-0"}]}}, "reservedFor": "everyone"}},
             {"metadata": {"name": "n" * 100_000, "namespace": 3}, "status": {
                 "allocation": {"devices": {"results": [{"driver": DRIVER, "pool": NODE, "device": "gpu-1",
                                                         "request": {"x": 1}, "consumedCapacity": {"cores": 5}}]}},
                 "reservedFor": [None, {"resource": "pods", "name": 5}, {"resource": "pods", "name": "p" * 5000}]}}]


def test_malformed_claims_are_shown_as_far_as_they_can_be():
    found = dra_gpus([_slice()], MALFORMED)
    rows = _gpu_rows(NodeView(NODE, tuple(found.by_node[NODE])))
    assert len(rows) == 2 and "claim (unnamed)" in rows[0][9] and "not reserved for a pod" in rows[0][9]
    long_name = found.by_node[NODE][1].holders[0]
    assert len(long_name.claim) < 200 and len(long_name.pods[0]) < 200 and long_name.core_pct == 5
    assert any("no usable consumedCapacity" in n for n in found.notes[NODE])


def test_randomly_broken_slices_and_claims_never_raise():
    """Any subtree of a valid slice or claim replaced by a value of another type or size."""
    rng = random.Random(7)
    junk = [None, "", "x" * 300, -1, 2**70, 1.5, True, [], {}, [None], {"value": "1e99999"}, "gpu-1", "99Gi"]

    def paths(value, at=()):
        yield at
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, at + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, at + (i,))

    for _ in range(400):
        objs = [_slice()] + copy.deepcopy(CLAIMS[:3])
        target = rng.choice(objs)
        path = rng.choice(list(paths(target)))
        if not path:
            continue
        parent = target
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = rng.choice(junk)
        found = dra_gpus(objs[:1], objs[1:])
        for node, gpus in found.by_node.items():
            _gpu_rows(NodeView(str(node), tuple(gpus)))


# -- through gather, with the API server's answers faked ------------------------------------------------

def _core(nodes: list[dict], pods: list[dict] = ()):
    def listed(items):
        return lambda **_: SimpleNamespace(data=json.dumps({"items": list(items)}).encode())

    return SimpleNamespace(list_node=listed(nodes), list_pod_for_all_namespaces=listed(pods),
                           api_client=SimpleNamespace(configuration=SimpleNamespace(host="https://fake:6443")))


def _objects(monkeypatch, answers: dict):
    """CustomObjectsApi answering each plural with its items, or raising the exception given for it."""
    class Objects:
        def __init__(self, _client):
            pass

        def list_cluster_custom_object(self, group, version, plural, **_):
            assert (group, version) == ("resource.k8s.io", "v1")
            answer = answers[plural]
            if isinstance(answer, Exception):
                raise answer
            return SimpleNamespace(data=json.dumps({"items": answer}).encode())

    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", Objects)


def _forbidden(plural: str) -> kubernetes.client.ApiException:
    exc = kubernetes.client.ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"message": f'{plural}.resource.k8s.io is forbidden: User "viewer" cannot list '
                                      f'resource "{plural}" in API group "resource.k8s.io" at the cluster scope'})
    return exc


def test_text_and_json_mark_dra_gpus_and_their_claims(monkeypatch):
    _objects(monkeypatch, {"resourceslices": [_slice(), _slice("ghost-node")], "resourceclaims": CLAIMS})
    view = gather(_core([{"metadata": {"name": NODE}}]))
    node = view.nodes[0]
    assert node.problem == "" and node.pods == ["team/trainer", "team/infer-a", "team/infer-b", "team/infer-c"]
    assert view.free_cores_by_mode == {"exclusive": 0.0, "mps": 50.0}
    assert view.dra_notes == ("2 DRA GPU(s) published for node 'ghost-node', which the cluster does not have",)
    text = render_text(view)
    assert "DRA: 2 GPU(s) published through the DRA driver, held by 3 ResourceClaim(s)" in text
    rows = {line.split()[5]: line for line in text.splitlines() if line.startswith(NODE) and "team/" in line}
    assert " dra " in rows["team/trainer"] and "claim whole (gpu)" in rows["team/trainer"]
    assert "30%" in rows["team/infer-a"] and "core 50%, 22 GiB" in rows["team/infer-a"]
    assert "team/infer-b, team/infer-c" in text
    doc = json.loads(json.dumps(render_json(view)))
    gpus = doc["nodes"][0]["gpus"]
    assert [(g["via"], g["device"], g["mode"]) for g in gpus] == [("dra", "gpu-0", "exclusive"), ("dra", "gpu-1", "mps")]
    assert [(h["claim"], h["namespace"], h["pods"], h["core_pct"], h["memory_gib"]) for h in gpus[1]["holders"]] == [
        ("share-a", "team", ["infer-a"], 30, 10), ("share-b", "team", ["infer-b", "infer-c"], 20, 8)]
    assert gpus[1]["free"]["core_pct"] == 50 and doc["dra_problem"] == ""


@pytest.mark.parametrize("answers, said", [
    ({"resourceslices": kubernetes.client.ApiException(status=404, reason="Not Found"), "resourceclaims": []},
     "DRA objects not read: the API server serves no resource.k8s.io/v1 resourceslices (404)"),
    ({"resourceslices": _forbidden("resourceslices"), "resourceclaims": []},
     'DRA objects not read: cannot list resourceslices.resource.k8s.io: 403 resourceslices.resource.k8s.io is '
     'forbidden: User "viewer" cannot list resource "resourceslices" in API group "resource.k8s.io" at the '
     'cluster scope'),
], ids=["absent", "forbidden"])
def test_without_dra_objects_the_device_plugin_view_stands_and_one_line_says_why(monkeypatch, answers, said):
    _objects(monkeypatch, answers)
    view = gather(_core([{"metadata": {"name": NODE}}]))
    assert view.dra_problem == said and view.nodes[0].gpus == ()
    assert "no tessera.io/gpu-inventory annotation" in view.nodes[0].problem
    text = render_text(view)
    assert [line for line in text.splitlines() if "DRA" in line] == [said]


def test_claims_forbidden_shows_the_gpus_without_holders(monkeypatch):
    _objects(monkeypatch, {"resourceslices": [_slice()], "resourceclaims": _forbidden("resourceclaims")})
    view = gather(_core([{"metadata": {"name": NODE}}]))
    assert [g.device for g in view.nodes[0].gpus] == ["gpu-0", "gpu-1"]
    assert all(not g.holders for g in view.nodes[0].gpus)
    assert view.dra_problem.startswith("DRA objects not read: cannot list resourceclaims.resource.k8s.io: 403")
    assert view.dra_problem.endswith("(DRA GPUs are shown without their holders)")


def test_a_mig_gpu_shows_the_devices_made_for_claims_not_every_placement_offered():
    from draplugin.devices import MODE_MIG, counter_set, mig_device_entry, mig_partitions
    from draplugin.slices import wanted_slices
    from tessera.nvmlmig import MigPlacement

    parent = PublishedGpu("gpu-2", GpuInfo(2, UUID1, "NVIDIA A100-SXM4-40GB", minor_number=5, memory_total_mib=40960,
                                           sm_count=108, mig_enabled=True), MODE_MIG)
    placements = [MigPlacement("1g.5gb", 19, 1, 4864, 14, s, 1) for s in range(7)] + [
        MigPlacement("3g.20gb", 9, 3, 19968, 42, s, 4) for s in (0, 4)]
    devices = [mig_device_entry(m, "550.54.15") for m in mig_partitions(parent, placements)]
    slices = wanted_slices({"metadata": {"name": NODE, "uid": "u-1"}}, DRIVER, devices,
                           [counter_set(parent, placements)], 1)
    found = dra_gpus(slices, [_claim("infer", "gpu-2-mig-3g-20gb-4", ("infer-0",))])
    (held,) = found.by_node[NODE]
    assert (held.index, held.uuid, held.mode, held.device) == (2, UUID1, "mig 3g.20gb", "gpu-2-mig-3g-20gb-4")
    assert [h.claim for h in held.holders] == ["infer"] and found.notes == {}


def test_a_time_sliced_gpu_shows_its_replicas_not_an_exclusive_device_held_thrice():
    from draplugin.devices import MODE_TIMESLICE

    ts = PublishedGpu("gpu-3", GpuInfo(3, UUID0, "NVIDIA A100-SXM4-80GB", minor_number=3, memory_total_mib=81920),
                      MODE_TIMESLICE, replicas=4)
    slices = [wanted_slice({"metadata": {"name": NODE, "uid": "u-1"}}, DRIVER, [device_entry(ts, "550.54.15")], 1)]
    claims = [_claim(f"turn-{n}", "gpu-3", (f"p{n}",), {"replicas": "1"}) for n in range(3)]
    found = dra_gpus(slices, claims)
    (gpu,) = found.by_node[NODE]
    assert found.notes == {} and (gpu.mode, gpu.memory_gib) == ("timeslice", 80)
    assert (gpu.free.replicas, gpu.free.replicas_total) == (1, 4) and len(gpu.holders) == 3
    assert {h.kind for h in gpu.holders} == {"timeslice"}


def test_each_claim_holder_shows_the_phase_of_the_pods_it_is_reserved_for(monkeypatch):
    _objects(monkeypatch, {"resourceslices": [_slice()], "resourceclaims": CLAIMS})
    pods = [{"metadata": {"namespace": "team", "name": name}, "status": {"phase": phase}}
            for name, phase in (("trainer", "Running"), ("infer-a", "Pending"), ("infer-b", "Running"))]
    view = gather(_core([{"metadata": {"name": NODE}}], pods))
    phases = {h.claim: h.phase for g in view.nodes[0].gpus for h in g.holders}
    # infer-c is reserved in share-b but the API server no longer has it.
    assert phases == {"whole": "Running", "share-a": "Pending", "share-b": "Running,absent"}
    rows = {r[5]: r[6] for r in _gpu_rows(view.nodes[0])}
    assert rows["team/infer-b, team/infer-c"] == "Running,absent"
