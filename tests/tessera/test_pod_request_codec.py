"""A pod's request has one reader in the core (tessera.podrequest): what a container writes in its spec
reads back, as device counts, exactly as written, whichever process reads it; anything the rules refuse
is refused with one line a user can act on. (The rules in detail: tests/extender/test_request_parsing.py.)"""

from __future__ import annotations

import pytest

from tessera.podrequest import RequestError, pod_request, requested_devices


def pod(*limits: dict) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": f"c{i}", "resources": {"limits": lim}} for i, lim in enumerate(limits)]}}


@pytest.mark.parametrize("limits", [
    {"nvidia.com/gpu": 2},
    {"nvidia.com/mig-1g.10gb": 3},
    {"nvidia.com/gpu.shared": 4},
    {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8},
    {"nvidia.com/mps-core": 40},
    {"nvidia.com/mps-core": 300, "nvidia.com/mps-memory": 240},
])
def test_device_counts_read_back_as_written(limits):
    request = pod(limits, {"cpu": "1"})
    got = {c.name: requested_devices(c.ask) for c in pod_request(request).containers}
    assert got == {"c0": limits, "c1": {}}
    assert pod_request(request).key == pod_request(pod(dict(limits), {"cpu": "1"})).key, "one shape, one key"


@pytest.mark.parametrize("limits,reason", [
    ({"nvidia.com/mps-core": 150}, "whole hundreds"),
    ({"nvidia.com/mps-core": 0}, "asks for no GPU"),
    ({"nvidia.com/mps-memory": 4}, "needs nvidia.com/mps-core"),
    ({"nvidia.com/gpu": "0.5"}, "whole number"),
    ({"nvidia.com/gpu": "-1"}, "negative"),
    ({"nvidia.com/gpu": "lots"}, "nvidia.com/gpu"),
    ({"nvidia.com/gpu": 1, "nvidia.com/gpu.shared": 1}, "one kind of GPU resource"),
])
def test_what_the_rules_refuse_is_refused_in_one_line(limits, reason):
    with pytest.raises(RequestError) as err:
        pod_request(pod(limits))
    assert reason in str(err.value) and "'c0'" in str(err.value) and "\n" not in str(err.value)


def test_a_pod_that_is_not_an_object_is_refused():
    with pytest.raises(RequestError, match="expected a JSON object"):
        pod_request([])  # type: ignore[arg-type]
