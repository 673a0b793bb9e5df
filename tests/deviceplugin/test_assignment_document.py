"""tessera.assignment: the extender signs, nodes verify; copies, forgeries and plugin records are refused."""

from __future__ import annotations

import json

import pytest

from tessera.assignment import (
    WRITTEN_BY_PLUGIN, Assignment, AssignmentError, ResourceAssignment, generate_keypair, load_public_key,
    plugin_assignment, read_assignment, sign_assignment, verify_assignment,
)


@pytest.fixture
def keys(tmp_path):
    private = generate_keypair(str(tmp_path / "k"), str(tmp_path / "k.pub"))
    return private, load_public_key(str(tmp_path / "k.pub"))


def doc(uid="uid-1", node="n1") -> Assignment:
    return Assignment(node=node, pod_uid=uid, containers={"main": {
        "nvidia.com/mps-core": ResourceAssignment(("GPU-a",), ("GPU-a::core::0",), core=1)}})


def test_signed_assignment_verifies_for_its_pod_and_node(keys):
    private, public = keys
    value = sign_assignment(doc(), private)
    got = verify_assignment(value, "uid-1", public, node="n1")
    assert got.containers["main"]["nvidia.com/mps-core"].device_ids == ("GPU-a::core::0",)
    assert json.loads(value)["version"] == 1


@pytest.mark.parametrize("tamper, reason", [
    (lambda v: v.replace("GPU-a::core::0", "GPU-b::core::0"), "bad signature"),
    (lambda v: v.replace('"core":1', '"core":2'), "bad signature"),
])
def test_a_changed_document_fails(keys, tamper, reason):
    private, public = keys
    with pytest.raises(AssignmentError, match=reason):
        verify_assignment(tamper(sign_assignment(doc(), private)), "uid-1", public, node="n1")


def test_copies_other_nodes_other_keys_and_plugin_records_fail(keys, tmp_path):
    private, public = keys
    value = sign_assignment(doc(), private)
    with pytest.raises(AssignmentError, match="copied from another pod"):
        verify_assignment(value, "uid-2", public, node="n1")
    with pytest.raises(AssignmentError, match="for node"):
        verify_assignment(value, "uid-1", public, node="n2")
    other = generate_keypair(str(tmp_path / "o"), str(tmp_path / "o.pub"))
    with pytest.raises(AssignmentError, match="bad signature"):
        verify_assignment(sign_assignment(doc(), other), "uid-1", public, node="n1")
    mine = plugin_assignment(Assignment("n1", "uid-1", doc().containers, written_by=WRITTEN_BY_PLUGIN))
    assert read_assignment(mine)[0].written_by == WRITTEN_BY_PLUGIN
    with pytest.raises(AssignmentError, match="no extender signature"):
        verify_assignment(mine, "uid-1", public, node="n1")
    for bad in ("not json", "[]", '{"version": 2}', 42):
        with pytest.raises(AssignmentError):
            read_assignment(bad)
