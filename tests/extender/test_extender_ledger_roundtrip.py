"""Every kind of grant survives the ledger: a placement written as the assignment document reads back
as the same placement (so a restarted extender holds exactly what was given), and the document names
the resources and device IDs the device plugin asks for."""

from __future__ import annotations

import pytest
from extender_builders import make_node, pod

from tessera.assignment import read_assignment, sign_assignment

from extender.assignments import ask_amounts, assignment_of, placement_of
from extender.placement import choose_gpus
from tessera.podrequest import pod_request


@pytest.mark.parametrize("mode, limits, resources", [
    ("mps", {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "5"}, {"nvidia.com/mps-core", "nvidia.com/mps-memory"}),
    ("mps", {"nvidia.com/mps-core": "30"}, {"nvidia.com/mps-core", "nvidia.com/mps-memory"}),
    ("mps", {"nvidia.com/mps-core": "200"}, {"nvidia.com/mps-core"}),
    ("exclusive", {"nvidia.com/gpu": "2"}, {"nvidia.com/gpu"}),
    ("timeslice", {"nvidia.com/gpu.shared": "3"}, {"nvidia.com/gpu.shared"}),
    ("mig", {"nvidia.com/mig-1g.10gb": "2"}, {"nvidia.com/mig-1g.10gb"}),
])
def test_assignment_reads_back_as_the_same_placement(mode, limits, resources):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    node = make_node("n1", gpus=2, mode=mode, mig=("1g.10gb", "1g.10gb", "2g.20gb"))
    request = pod_request(pod(limits, name="p"))
    placement = choose_gpus(request, node)
    doc = assignment_of(placement, request, "uid-p")
    assert set(doc.containers["c0"]) == resources
    value = sign_assignment(doc, Ed25519PrivateKey.generate())
    back, signature = read_assignment(value)
    assert signature and placement_of(back, node, placement.pod, request) == placement
    # And it holds on a fresh node exactly as the original did.
    fresh = make_node("n1", gpus=2, mode=mode, mig=("1g.10gb", "1g.10gb", "2g.20gb"))
    fresh.assume(placement_of(back, fresh, placement.pod, request))
    node.assume(placement)
    assert [g.used_fraction for g in fresh.gpus] == [g.used_fraction for g in node.gpus]


def test_ask_amounts_name_each_resource_and_size():
    request = pod_request(pod({"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}, {"nvidia.com/gpu": "1"}))
    assert ask_amounts(request) == {("nvidia.com/mps-core", 50), ("nvidia.com/mps-memory", 8), ("nvidia.com/gpu", 1)}
