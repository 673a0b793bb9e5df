"""The hook's container record has one codec (tessera.containerrecord): what the hook writes, the exporter
reads back to the same container, cgroups and signed grants (no copy of the grant's fields), and a file
that is not such a record is refused with one line saying why."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tessera.containerrecord import ContainerRecord, ContainerRecordError, decode_record, encode_record
from tessera.grant import Grant, new_grant

CID = "ab" * 32
UUID = "GPU-0a1b"


def record() -> ContainerRecord:
    core = new_grant("nvidia.com/mps-core", "n1", [f"{UUID}::core::{n}" for n in range(30)], [UUID], ["/dev/nvidia0"],
                     core=30, pipe="/run/tessera/mps/pipe")
    mem = new_grant("nvidia.com/mps-memory", "n1", [f"{UUID}::mem::{n}" for n in range(8)], [UUID], ["/dev/nvidia0"],
                    mem_gib=8)
    return ContainerRecord(CID, 4242, "train", "team-a", "uid-1", "main", 1712345678,
                           {"": "/kubepods/pod1/c1", "devices": "/kubepods/devices/c1"}, [core, mem],
                           {"CUDA_VISIBLE_DEVICES": UUID})


def test_a_record_reads_back_as_written():
    written = record()
    text = encode_record(written)
    back = decode_record(text)
    assert back == written and encode_record(back) == text
    assert all(isinstance(g, Grant) for g in back.grants) and back.grants[0].core == 30 and back.grants[1].mem_gib == 8
    assert back.cgroup_paths == ("/kubepods/devices/c1", "/kubepods/pod1/c1")
    doc = json.loads(text)
    assert doc["cgroup"] == "/kubepods/devices/c1", "readers of the single path still find the devices cgroup"
    assert doc["grants"][0]["nonce"] == written.grants[0].nonce


def test_a_record_with_only_the_single_cgroup_path_still_names_it():
    doc = json.loads(encode_record(record()))
    doc["cgroups"], doc["cgroup"] = {}, "/kubepods/old"
    assert decode_record(json.dumps(doc)).cgroup_paths == ("/kubepods/old",)


def _with(**changes) -> str:
    doc = json.loads(encode_record(record()))
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize("text,reason", [
    ("{", "not JSON"),
    ("[]", "not a JSON object"),
    (_with(pod=""), "needs container_id, pod, namespace and container"),
    (_with(container_id=7), "'container_id' must be a str"),
    (_with(pid="4242"), "'pid' must be a int"),
    (_with(cgroups={"": 1}), "'cgroups' must map strings to strings"),
    (_with(grants={}), "'grants' must be a list"),
    (_with(grants=[{"resource": "nvidia.com/gpu", "v": 1}]), "grants[0]"),
])
def test_anything_else_is_refused_in_one_line(text, reason):
    with pytest.raises(ContainerRecordError) as err:
        decode_record(text)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_the_codec_imports_only_the_standard_library():
    probe = ("import sys; before = set(sys.modules); import tessera.containerrecord; "
             "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    assert eval(out) == ["tessera", "tessera.containerrecord", "tessera.deviceids", "tessera.grant"]  # noqa: S307
