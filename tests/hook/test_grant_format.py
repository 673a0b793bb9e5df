"""The signed grant: what the device plugin signs, the hook verifies, and nobody else can mint."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tessera.grant import (
    GrantError, annotation_key, container_env, encode, generate_key, grant_env, load_key, new_grant, sign, verify,
)

KEY = b"k" * 32
UUID = "GPU-00000000-1111-2222-3333-444444444444"


def mps_core(core: int = 50):
    return new_grant("nvidia.com/mps-core", "node-1", [f"{UUID}::core::{i}" for i in range(core)], [UUID],
                     ["/dev/nvidia0"], core=core, pipe="/run/tessera/mps/pipe", now=1_700_000_000)


def test_one_annotation_key_per_resource():
    assert annotation_key("nvidia.com/gpu") == "tessera.io/grant.gpu"
    assert annotation_key("nvidia.com/mps-memory") == "tessera.io/grant.mps-memory"
    assert annotation_key("nvidia.com/mig-3g.40gb") == "tessera.io/grant.mig-3g.40gb"
    assert annotation_key("nvidia.com/gpu.shared") == "tessera.io/grant.gpu.shared"


def test_signed_grant_verifies_to_the_same_grant():
    grant = mps_core()
    (key, value), = encode(grant, KEY).items()
    assert key == "tessera.io/grant.mps-core"
    assert value.startswith("v1.")
    assert verify(key, value, KEY) == grant
    payload = json.loads(base64.urlsafe_b64decode(value.split(".")[1] + "=="))
    assert payload["core"] == 50 and payload["uuids"] == [UUID] and payload["node"] == "node-1"
    assert len(payload["nonce"]) == 32 and payload["issued"] == 1_700_000_000


def test_two_grants_never_share_a_nonce():
    assert mps_core().nonce != mps_core().nonce


@pytest.mark.parametrize("tamper", ["payload", "mac", "key", "moved"])
def test_tampered_grants_fail(tamper):
    grant = mps_core()
    value = sign(grant, KEY)
    version, payload, mac = value.split(".")
    ann_key, key = grant.annotation_key, KEY
    if tamper == "payload":
        doc = json.loads(base64.urlsafe_b64decode(payload + "=="))
        doc["core"] = 100
        payload = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    elif tamper == "mac":
        mac = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    elif tamper == "key":
        key = b"x" * 32
    else:
        ann_key = "tessera.io/grant.gpu"
    with pytest.raises(GrantError, match="bad signature"):
        verify(ann_key, f"{version}.{payload}.{mac}", key)


@pytest.mark.parametrize("value", ["", "v1.abc", "v2.a.b", "garbage", 42])
def test_malformed_values_fail_with_a_reason(value):
    with pytest.raises(GrantError):
        verify("tessera.io/grant.gpu", value, KEY)


def test_bad_fields_are_refused_at_signing_time():
    with pytest.raises(GrantError, match="core"):
        new_grant("nvidia.com/mps-core", "n", ["x"], [UUID], ["/dev/nvidia0"], core=150, pipe="/p")
    with pytest.raises(GrantError, match="device path"):
        new_grant("nvidia.com/gpu", "n", [UUID], [UUID], ["/etc/shadow"])
    with pytest.raises(GrantError, match="mem_gib"):
        new_grant("nvidia.com/mps-memory", "n", ["x"], [UUID], ["/dev/nvidia0"])


def test_environment_contract():
    core = mps_core(50)
    mem = new_grant("nvidia.com/mps-memory", "node-1", [f"{UUID}::mem::0"], [UUID], ["/dev/nvidia0"], mem_gib=8)
    assert container_env([core, mem]) == {
        "NVIDIA_VISIBLE_DEVICES": UUID, "CUDA_VISIBLE_DEVICES": UUID,
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50", "CUDA_MPS_PIPE_DIRECTORY": "/run/tessera/mps/pipe",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=8G",
    }
    two = new_grant("nvidia.com/mps-memory", "node-1",
                    [f"{UUID}::mem::{i}" for i in range(80)] + [f"GPU-2::mem::{i}" for i in range(40)],
                    [UUID, "GPU-2"], ["/dev/nvidia0", "/dev/nvidia2"], mem_gib=120)
    assert grant_env(two)["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=80G,1=40G"
    other = new_grant("nvidia.com/gpu", "node-1", ["GPU-2"], ["GPU-2"], ["/dev/nvidia2"])
    assert grant_env(other)["NVIDIA_VISIBLE_DEVICES"] == "GPU-2"
    with pytest.raises(GrantError, match="one kind of GPU grant"):
        container_env([core, other])


def test_node_key_must_be_root_only(tmp_path):
    path = tmp_path / "node.key"
    key = generate_key(str(path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert load_key(str(path)) == key
    with pytest.raises(FileExistsError):
        generate_key(str(path))
    os.chmod(path, 0o644)
    with pytest.raises(GrantError, match="mode 0644"):
        load_key(str(path))
    with pytest.raises(GrantError, match="No such file"):
        load_key(str(tmp_path / "missing"))
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    os.chmod(short, 0o600)
    with pytest.raises(GrantError, match="at least 32"):
        load_key(str(short))
