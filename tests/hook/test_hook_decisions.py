"""The hook's decisions on the kubelet's config.json, run as a runtime runs it (no container started).

Each refusal is one line on stderr that says why; nothing is written for a refused container.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from tessera.grant import sign

FLAVOURS = ["containerd", "crio"]


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_granted_container_is_recorded(node, flavour):
    grant, response = node.allocate("nvidia.com/gpu", [0])
    result = node.run_hook(node.config("true", [response], flavour=flavour), flavour)
    assert result.returncode == 0, result.stderr
    (record,) = node.records()
    assert record["pod"] == "app" and record["namespace"] == "team-a" and record["container"] == "main"
    assert record["grants"][0]["nonce"] == grant.nonce


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unrelated_container_passes_and_nothing_is_written(node, flavour):
    result = node.run_hook(node.config("true", flavour=flavour, env={"NVIDIA_VISIBLE_DEVICES": "all"}), flavour)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not node.state_dir.exists()


def test_identity_keys_follow_the_configured_runtime(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    config = node.config("true", [response], flavour="crio")
    result = node.run_hook(config, "containerd")  # the hook told containerd, the node runs CRI-O
    assert result.returncode == 1
    assert "no pod UID in annotation io.kubernetes.cri.sandbox-uid" in one_line(result)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_repeated_grant_binds_to_the_first_pod(node, flavour):
    _, response = node.allocate("nvidia.com/gpu", [0])
    first = node.config("true", [response], flavour=flavour, pod_uid="uid-first")
    assert node.run_hook(first, flavour).returncode == 0
    assert node.run_hook(first, flavour).returncode == 0  # the same pod's container restarts
    copy = node.config("true", [response], flavour=flavour, pod_uid="uid-thief")
    result = node.run_hook(copy, flavour)
    assert result.returncode == 1
    assert "already bound to pod uid-first" in one_line(result)


def test_grant_signed_with_another_key_is_refused(node):
    _, response = node.allocate("nvidia.com/gpu", [0], key=b"z" * 32)
    result = node.run_hook(node.config("true", [response]), "containerd")
    assert result.returncode == 1
    assert "bad signature" in one_line(result)
    assert node.records() == []


def test_grant_moved_to_another_resource_key_is_refused(node):
    grant, response = node.allocate("nvidia.com/gpu", [1])
    response.annotations.clear()
    response.annotations["tessera.io/grant.gpu.shared"] = sign(grant, node.key)
    result = node.run_hook(node.config("true", [response]), "containerd")
    assert result.returncode == 1 and "bad signature" in one_line(result)


def test_mps_pair_passes_and_memory_limit_is_checked(node):
    _, core = node.allocate("nvidia.com/mps-core", [2], core=30)
    _, mem = node.allocate("nvidia.com/mps-memory", [2], mem_gib=6)
    ok = node.config("true", [core, mem], uid=1000)
    assert node.run_hook(ok, "containerd").returncode == 0, "a correct MPS container must start"
    greedy = node.config("true", [core, mem], uid=1000, env={"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=80G"})
    result = node.run_hook(greedy, "containerd")
    assert result.returncode == 1
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=80G" in one_line(result) and "0=6G" in result.stderr


def test_privileged_granted_container_follows_allow_privileged(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    config = node.config("true", [response])
    config["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1 and "privileged" in one_line(result)
    allowed = node.run_hook(config, "containerd", extra=["--allow-privileged"])
    assert allowed.returncode == 0, allowed.stderr


def test_granted_container_cannot_add_another_gpu(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    config = node.config("true", [response])
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 195, "minor": 5,
                                                    "access": "rw"})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1 and "'c 195:5 rw'" in one_line(result)


@pytest.mark.parametrize("mount_source", ["/dev", "/dev/nvidia3"])
def test_cpu_container_with_a_gpu_bind_mount_is_refused(node, mount_source):
    config = node.config("true")
    config["mounts"].append({"destination": "/host-dev", "type": "bind", "source": mount_source,
                             "options": ["rbind", "rw"]})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1
    line = one_line(result)
    assert mount_source in line and "request nvidia.com/gpu" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="making a character device node needs root")
def test_cpu_container_bind_mounting_a_gpu_device_node_from_elsewhere_is_refused(node, tmp_path):
    # A driver root (/run/nvidia/driver) or a copy made by an admin holds GPU device nodes outside /dev.
    elsewhere = tmp_path / "driver-root" / "gpu-node"
    elsewhere.parent.mkdir()
    os.mknod(elsewhere, 0o600 | stat.S_IFCHR, os.makedev(195, 2))
    config = node.config("true")
    config["mounts"].append({"destination": "/dev/gpu", "type": "bind", "source": str(elsewhere),
                             "options": ["bind", "rw"]})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1
    assert str(elsewhere) in one_line(result) and "request nvidia.com/gpu" in one_line(result)


def test_cpu_container_with_a_gpu_allow_rule_is_refused(node):
    config = node.config("true")
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 195, "access": "rwm"})
    result = node.run_hook(config, "crio")
    assert result.returncode == 1 and "opens GPU devices" in one_line(result)


@pytest.mark.parametrize("rule, shown", [
    ({"type": "c", "minor": 0}, "'c *:0 rwm'"),                    # no major at all
    ({"type": "c", "major": None, "minor": 3}, "'c *:3 rwm'"),     # major null
    ({"type": "c", "major": -1, "minor": 0}, "'c *:0 rwm'"),       # major -1, as some runtimes write it
    ({"type": "a", "minor": 0}, "'a *:0 rwm'"),                    # every type
    ({"minor": 7}, "'a *:7 rwm'"),                                 # no type: every type
    ({"type": "c", "major": "195", "minor": 0}, "'c '195':0 rwm'"),  # not a number: the runtime's guess, not ours
])
@pytest.mark.parametrize("granted", [False, True])
def test_a_wildcard_major_rule_is_refused(node, rule, shown, granted):
    responses = [node.allocate("nvidia.com/gpu", [1])[1]] if granted else []
    config = node.config("true", responses)
    config["linux"]["resources"]["devices"].append({"allow": True, "access": "rwm", **rule})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1
    line = one_line(result)
    assert shown in line and ("no grant covers" if granted else "request nvidia.com/gpu") in line
    assert node.records() == []


def test_a_block_device_wildcard_rule_is_no_gpu_business(node):
    config = node.config("true")
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "b", "minor": 0, "access": "rwm"})
    assert node.run_hook(config, "containerd").returncode == 0


def test_exempt_namespace_may_reach_gpus_without_a_grant(node):
    config = node.config("true")
    config["linux"]["devices"].append({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0})
    config["annotations"]["io.kubernetes.cri.sandbox-namespace"] = "tessera-system"
    assert node.run_hook(config, "containerd").returncode == 0
    result = node.run_hook(config, "containerd", extra=["--exempt-namespaces", "other"])
    assert result.returncode == 1


@pytest.mark.parametrize("stdin, message", [
    ("not json", "OCI state on stdin is not JSON"),
    ("[]", "not a JSON object"),
    ('{"id": "../x", "bundle": "/tmp", "pid": 1}', "no usable container id"),
    ('{"id": "c1", "pid": 1}', "no absolute bundle path"),
])
def test_malformed_state_gives_one_line(node, stdin, message):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "hook.main", "createRuntime"], input=stdin,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in one_line(result)


def test_deeply_nested_state_gives_one_line(node):
    import subprocess
    import sys

    state = '{"id": "c1", "bundle": "/tmp", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    result = subprocess.run([sys.executable, "-m", "hook.main", "createRuntime"], input=state,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "OCI state on stdin is nested too deeply" in one_line(result)


def test_deeply_nested_config_json_gives_one_line(node):
    config = node.config("true")
    config["annotations"]["deep"] = "NEST"
    bundle = node.root / "deep"
    bundle.mkdir()
    text = json.dumps(config).replace('"NEST"', "[" * 100_000 + "]" * 100_000)
    (bundle / "config.json").write_text(text)
    import subprocess
    import sys

    state = json.dumps({"id": "deep", "pid": 0, "bundle": str(bundle)})
    result = subprocess.run([sys.executable, "-m", "hook.main", "createRuntime", *node.flags("containerd")],
                            input=state, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{bundle}/config.json is nested too deeply" in one_line(result)


def test_malformed_config_json_gives_one_line(node, tmp_path):
    config = node.config("true")
    config["process"]["env"] = "PATH=/bin"
    result = node.run_hook(config, "containerd")
    assert result.returncode == 2 and "process.env is not a list of strings" in one_line(result)


def test_unreadable_key_gives_one_line(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    os.chmod(node.key_path, 0o644)
    result = node.run_hook(node.config("true", [response]), "containerd")
    assert result.returncode == 2 and "must be 0600" in one_line(result)


def test_poststop_removes_the_record_and_tolerates_none(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    config = node.config("true", [response])
    assert node.run_hook(config, "containerd").returncode == 0
    (record,) = node.records()
    bundle = node.root / record["container_id"]
    state = json.dumps({"id": record["container_id"], "pid": 0, "bundle": str(bundle)})
    import subprocess
    import sys

    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "hook.main", "poststop", *node.flags("containerd")],
                                input=state, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stderr == ""
    assert node.records() == []


def test_privileged_cpu_container_needs_no_grant_until_it_names_a_gpu(node):
    config = node.config("true")
    config["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    config["mounts"].append({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "ro"]})
    assert node.run_hook(config, "containerd").returncode == 0, "e.g. a CNI or node-exporter pod"
    config["linux"]["devices"].append({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1 and "/dev/nvidia0" in one_line(result)


def dra_response(node, grant, *, name: str | None = None, key: bytes | None = None):
    """What containerd makes of the DRA driver's CDI spec for ``grant``: its variables (the NVIDIA ones
    and ``TESSERA_GRANT_<nonce>``) and device nodes, and no annotation (CDI cannot set one)."""
    from tessera.grant import env_entry

    response = node.response(grant)
    response.annotations.clear()
    env_name, value = env_entry(grant, key or node.key)
    response.envs[name or env_name] = value
    return response


def test_a_grant_in_the_environment_is_verified_bound_and_recorded(node):
    grant, _ = node.allocate("nvidia.com/gpu", [1])
    result = node.run_hook(node.config("true", [dra_response(node, grant)], pod_uid="uid-dra"), "containerd")
    assert result.returncode == 0, result.stderr
    (record,) = node.records()
    assert record["grants"][0]["nonce"] == grant.nonce
    copy = node.config("true", [dra_response(node, grant)], pod_uid="uid-thief")
    refused = node.run_hook(copy, "containerd")
    assert refused.returncode == 1 and "already bound to pod uid-dra" in one_line(refused)


def test_a_grant_in_the_environment_must_be_the_node_s_and_under_its_own_name(node):
    grant, _ = node.allocate("nvidia.com/gpu", [1])
    forged = node.run_hook(node.config("true", [dra_response(node, grant, key=b"z" * 32)]), "containerd")
    assert forged.returncode == 1 and "bad signature" in one_line(forged)
    renamed = node.run_hook(node.config("true", [dra_response(node, grant, name="TESSERA_GRANT_" + "0" * 32)]),
                            "containerd")
    assert renamed.returncode == 1 and "a grant is not moved" in one_line(renamed)
    junk = node.run_hook(node.config("true", env={"TESSERA_GRANT_x": "hello"}), "containerd")
    assert junk.returncode == 1 and "is not a v1 grant" in one_line(junk)
    assert node.records() == []


def test_a_grant_in_the_environment_still_needs_its_device_nodes(node):
    """A tenant who copies a grant's variable into a pod without the GPU gets nothing started."""
    from tessera.grant import env_entry

    grant, _ = node.allocate("nvidia.com/gpu", [1])
    name, value = env_entry(grant, node.key)
    result = node.run_hook(node.config("true", env={name: value, "NVIDIA_VISIBLE_DEVICES": grant.uuids[0],
                                                    "CUDA_VISIBLE_DEVICES": grant.uuids[0]}), "containerd")
    assert result.returncode == 1 and "/dev/nvidia1" in one_line(result)
