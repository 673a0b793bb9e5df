"""A pod's Tessera request as the extender reads it: units, CPU and memory sums, model constraints, and
every refusal a user may meet, in words they can act on."""

from __future__ import annotations

import pytest
from extender_builders import GIB, pod

from tessera.quantity import QuantityError, cpu_millis, memory_bytes
from tessera.podrequest import KIND_GPU, KIND_MIG, KIND_MPS, KIND_MPS_WHOLE, KIND_TIMESLICE, RequestError, pod_request


@pytest.mark.parametrize("text, millis", [("500m", 500), ("2", 2000), ("0.1", 100), ("1e3", 1_000_000),
                                          ("1.5", 1500), (3, 3000), ("100u", 1)])
def test_cpu_quantities(text, millis):
    assert cpu_millis(text) == millis


@pytest.mark.parametrize("text, nbytes", [("1Gi", GIB), ("512Mi", 512 << 20), ("1e3", 1000), ("1k", 1000),
                                          ("1.5Gi", 3 * GIB // 2), ("2M", 2_000_000)])
def test_memory_quantities(text, nbytes):
    assert memory_bytes(text) == nbytes


@pytest.mark.parametrize("text", ["1GB", "", "ten", "1..5", "Gi"])
def test_bad_quantities_are_refused(text):
    with pytest.raises(QuantityError, match="is not a quantity"):
        memory_bytes(text)


def test_each_kind_of_ask():
    req = pod({"nvidia.com/gpu": "2"}, {"nvidia.com/mig-1g.10gb": "1"},
              {"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}, {"nvidia.com/mps-core": "300"},
              {"nvidia.com/gpu.shared": "1"}, {"cpu": "1"})
    r = pod_request(req)
    asks = [c.ask for c in r.containers]
    assert (asks[0].kind, asks[0].count) == (KIND_GPU, 2)
    assert (asks[1].kind, asks[1].profile) == (KIND_MIG, "1g.10gb")
    assert (asks[2].kind, asks[2].core, asks[2].memory_gib) == (KIND_MPS, 50, 8)
    assert (asks[3].kind, asks[3].count) == (KIND_MPS_WHOLE, 3)
    assert (asks[4].kind, asks[4].count) == (KIND_TIMESLICE, 1)
    assert asks[5] is None
    assert r.gpu_cores == 200 + 50 + 300


def test_whole_mps_gpus_carry_the_memory_the_webhook_completed():
    ask = pod_request(pod({"nvidia.com/mps-core": "200", "nvidia.com/mps-memory": "160"})).asks[0]
    assert (ask.kind, ask.count, ask.memory_gib) == (KIND_MPS_WHOLE, 2, 160)


def test_mps_core_alone_takes_its_share_of_the_card():
    ask = pod_request(pod({"nvidia.com/mps-core": "46"})).asks[0]
    assert ask.memory_gib is None
    assert ask.memory_on(15) == 6 and ask.memory_on(32) == 14
    assert pod_request(pod({"nvidia.com/mps-core": "5"})).asks[0].memory_on(15) == 1  # at least 1 GiB


def test_cpu_and_memory_add_up_as_kube_scheduler_does():
    p = pod({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1.5", "memory": "512Mi"},
            init=[{"name": "setup", "resources": {"requests": {"cpu": "4", "memory": "1Mi"}}},
                  {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m"}}}],
            overhead={"cpu": "100m"})
    r = pod_request(p)
    # app 2000m + sidecar 250m vs the plain init container alone (4000m): the larger, plus overhead
    assert r.cpu_milli == 4000 + 100
    assert r.memory_bytes == GIB + (512 << 20)


def test_requests_win_and_limits_stand_in():
    p = pod({"cpu": "2"})
    p["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "1"}
    assert pod_request(p).cpu_milli == 1000


def test_model_constraint_from_affinity_and_selector():
    aff = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["T4", "A10"]},
        {"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["A10"]}]}]}
    m = pod_request(pod({"nvidia.com/gpu": 1}, affinity=aff)).models
    assert m.allows("T4") and not m.allows("A10") and not m.allows("V100M16")
    p = pod({"nvidia.com/gpu": 1})
    p["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "P100"}
    m = pod_request(p).models
    assert m.allows("P100") and not m.allows("T4")
    assert pod_request(pod({"nvidia.com/gpu": 1})).models is None


def test_terms_are_ored():
    aff = {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["T4"]}]},
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A10"]}]}]}
    m = pod_request(pod({"nvidia.com/gpu": 1}, affinity=aff)).models
    assert m.allows("T4") and m.allows("A10") and not m.allows("P100")


def test_workload_from_owner_or_label():
    assert pod_request(pod({}, owner="web")).workload == "ns/ReplicaSet/rs-web"
    assert pod_request(pod({}, owner="web", labels={"app": "shop"}), workload_label="app").workload == "ns/shop"


@pytest.mark.parametrize("limits, message", [
    ({"nvidia.com/mps-memory": "8"}, "nvidia.com/mps-memory needs nvidia.com/mps-core on the same GPU"),
    ({"nvidia.com/mps-core": "150"}, "150 is over 100 but not in whole hundreds"),
    ({"nvidia.com/mps-core": "0"}, "mps-core: 0 asks for no GPU"),
    ({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "0"}, "a share needs at least 1 GiB"),
    ({"nvidia.com/gpu": "1", "nvidia.com/mps-core": "50"}, "one container uses one kind of GPU resource"),
    ({"nvidia.com/gpu.shared": "1", "nvidia.com/mig-1g.10gb": "1"}, "one container uses one kind"),
    ({"nvidia.com/gpu": "500m"}, "nvidia.com/gpu must be a whole number, got 500m"),
    ({"nvidia.com/mps-core": "12.5"}, "nvidia.com/mps-core must be a whole number"),
    ({"nvidia.com/gpu": "-1"}, "cannot be negative"),
    ({"nvidia.com/gpu": "one"}, "is not a quantity"),
    ({"cpu": "lots"}, "cpu: 'lots' is not a quantity"),
])
def test_malformed_requests_are_refused_with_reasons(limits, message):
    with pytest.raises(RequestError, match=message.replace(".", r"\.").replace("(", r"\(")):
        pod_request(pod(limits))


def test_request_and_limit_must_agree_for_gpus():
    p = pod({"nvidia.com/gpu": "2"})
    p["spec"]["containers"][0]["resources"]["requests"] = {"nvidia.com/gpu": "1"}
    with pytest.raises(RequestError, match="request 1 and limit 2 differ"):
        pod_request(p)


def test_gpu_resources_in_init_containers_are_refused():
    p = pod({}, init=[{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}])
    with pytest.raises(RequestError, match="init container 'warm'"):
        pod_request(p)


def test_same_shape_same_key():
    a = pod_request(pod({"nvidia.com/mps-core": "50", "cpu": "1"}, name="a"))
    b = pod_request(pod({"nvidia.com/mps-core": "50", "cpu": "1000m"}, name="b"))
    c = pod_request(pod({"nvidia.com/mps-core": "40", "cpu": "1"}, name="c"))
    assert a.key == b.key != c.key
