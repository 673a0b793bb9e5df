"""``tessera.io/allocated`` has one codec (tessera.allocated): what the plugin's ledger writer encodes,
the extender and ``tessera inspect`` decode to the same holdings, and a value that is not such a
record is refused with one line saying why."""

from __future__ import annotations

import json

import pytest

from tessera.allocated import AllocatedError, AllocatedRecord, decode_allocated, encode_allocated
from tessera.assignment import WRITTEN_BY_PLUGIN, AssignmentError, ResourceAssignment
from tessera.deviceids import core_id, mem_id

GPU = "GPU-0a1b"
HELD = {"main": {"nvidia.com/mps-core": ResourceAssignment((GPU,), tuple(core_id(GPU, n) for n in range(30)), core=30),
                 "nvidia.com/mps-memory": ResourceAssignment((GPU,), tuple(mem_id(GPU, n) for n in range(8)), mem_gib=8)},
        "sidecar": {"nvidia.com/gpu": ResourceAssignment(("GPU-ffff",), ("GPU-ffff",))}}


def test_a_record_reads_back_as_written():
    record = AllocatedRecord("gpu-node-1", HELD)
    value = encode_allocated(record)
    assert decode_allocated(value) == record
    assert encode_allocated(decode_allocated(value)) == value, "an unchanged record is written byte for byte the same"
    assert json.loads(value)["version"] == 1 and " " not in value


def test_a_record_reads_as_the_plugins_unsigned_assignment():
    doc = decode_allocated(encode_allocated(AllocatedRecord("n1", HELD))).as_assignment("uid-1")
    assert (doc.node, doc.pod_uid, doc.written_by, doc.containers) == ("n1", "uid-1", WRITTEN_BY_PLUGIN, HELD)


@pytest.mark.parametrize("value,reason", [
    (None, "not a string"),
    ("main", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"version": 2, "node": "n", "containers": {}}', "not a version 1"),
    ('{"version": 1, "containers": {}}', "node string"),
    ('{"version": 1, "node": "n", "containers": []}', "containers must be an object"),
    ('{"version": 1, "node": "n", "containers": {"main": {"nvidia.com/gpu": {"gpus": [3]}}}}', "list of strings"),
    ('{"version": 1, "node": "n", "containers": {"main": {"nvidia.com/mps-core": {"core": 0}}}}', "positive"),
])
def test_anything_else_is_refused_in_one_line(value, reason):
    with pytest.raises(AllocatedError) as err:
        decode_allocated(value)
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, AssignmentError), "callers that check a record with an assignment catch both"
