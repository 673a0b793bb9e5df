"""The hook under real runc and crun, in containerd and CRI-O shapes, with fake GPU device nodes.

Opening a device node the container may use fails with ENXIO (there is no driver); one the device
cgroup denies fails with EPERM. A refused container never runs its command, and the runtime's
error carries the hook's line.
"""

from __future__ import annotations

import time

import pytest

from tessera.grant import grant_env, sign

FLAVOURS = ["containerd", "crio"]
PROBE = ("for d in 0 1 2 3 4 5 6 7 ctl; do "
         "if [ -e /dev/nvidia$d ]; then cat /dev/nvidia$d 2>&1 | grep -o -e 'No such device or address' "
         "-e 'Operation not permitted' | sed \"s|^|nvidia$d: |\"; fi; done; "
         "mknod /dev/stolen c 195 5 2>/dev/null; cat /dev/stolen 2>&1 | grep -o 'Operation not permitted'; "
         "echo ran")


def refused(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "ran" not in result.stdout
    assert "tessera-hook: " in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_granted_container_opens_only_its_gpus(runtime, node, flavour):
    _, response = node.allocate("nvidia.com/gpu", [2, 5])
    result = runtime.run(node.config(PROBE.replace("195 5", "195 1"), [response], flavour=flavour), flavour)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert "nvidia2: No such device or address" in lines
    assert "nvidia5: No such device or address" in lines
    assert "nvidiactl: No such device or address" in lines
    assert not [line for line in lines if line.startswith(("nvidia0", "nvidia1", "nvidia3", "nvidia4"))]
    assert "Operation not permitted" in lines, "a GPU made with mknod inside must not open"
    assert lines[-2] == "ran"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cpu_container_with_a_gpu_node_does_not_start(runtime, node, flavour):
    config = node.config(PROBE, flavour=flavour)
    config["linux"]["devices"].append({"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0,
                                       "fileMode": 0o666, "uid": 0, "gid": 0})
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 195, "minor": 0,
                                                    "access": "rwm"})
    refused(runtime.run(config, flavour), "no Tessera grant", "/dev/nvidia0", "request nvidia.com/gpu")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cpu_container_with_a_wildcard_major_rule_does_not_start(runtime, node, flavour):
    # "c *:0 rwm" names no GPU major, but lets the container mknod and open GPU 0 (195:0).
    config = node.config("mknod /dev/g0 c 195 0; cat /dev/g0 2>&1; echo ran", flavour=flavour)
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "minor": 0, "access": "rwm"})
    refused(runtime.run(config, flavour), "no Tessera grant", "'c *:0 rwm'", "request nvidia.com/gpu")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cpu_container_with_image_visible_devices_starts_without_gpus(runtime, node, flavour):
    result = runtime.run(node.config(PROBE, flavour=flavour, env={"NVIDIA_VISIBLE_DEVICES": "all"}), flavour)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2:] == ["ran", ""]
    assert "nvidia" not in result.stdout


def test_grant_copied_from_another_pod_is_refused(runtime, node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    owner = node.config("echo ran", [response], pod_uid="uid-owner")
    assert runtime.run(owner, "containerd").returncode == 0
    thief = node.config("echo ran", [response], pod_uid="uid-thief")
    refused(runtime.run(thief, "containerd"), "already bound to pod uid-owner")


def test_tampered_grant_is_refused(runtime, node):
    grant, response = node.allocate("nvidia.com/gpu", [0])
    grant.paths.append("/dev/nvidia1")  # widen the grant, re-sign without the node's key
    response.annotations[grant.annotation_key] = sign(grant, b"0" * 32)
    refused(runtime.run(node.config("echo ran", [response]), "containerd"), "bad signature")


def test_pod_written_grant_annotation_is_refused_on_crio(runtime, node):
    victim, response = node.allocate("nvidia.com/gpu", [3])
    victim_config = node.config("echo ran", [response], flavour="crio", pod_uid="uid-victim")
    copied = victim_config["annotations"][victim.annotation_key]
    # A CPU pod writes a grant: a made-up one, then the victim's copied one. CRI-O copies both in.
    forged = {victim.annotation_key: "v1.eyJ2IjoxfQ.AAAA"}
    refused(runtime.run(node.config("echo ran", flavour="crio", annotations=forged), "crio"), "bad signature")
    copy = node.config("echo ran", flavour="crio", annotations={victim.annotation_key: copied},
                       env=grant_env(victim))  # even with the victim's environment
    refused(runtime.run(copy, "crio"), "/dev/nvidia3", "copied")
    assert runtime.run(victim_config, "crio").returncode == 0, "the victim still starts"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_later_conflicting_mps_percentage_is_refused(runtime, node, flavour):
    _, core = node.allocate("nvidia.com/mps-core", [1], core=25)
    _, mem = node.allocate("nvidia.com/mps-memory", [1], mem_gib=4)
    sneaky = node.config("echo ran", [core, mem], flavour=flavour, uid=1000,
                         env={"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100"})
    if flavour == "containerd":  # both copies reach process.env; the process would get the last
        assert sneaky["process"]["env"].count("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25") == 1
    refused(runtime.run(sneaky, flavour), "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100",
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25")


def test_mps_container_of_another_user_is_refused(runtime, node):
    _, core = node.allocate("nvidia.com/mps-core", [1], core=25)
    _, mem = node.allocate("nvidia.com/mps-memory", [1], mem_gib=4)
    refused(runtime.run(node.config("echo ran", [core, mem], uid=0), "containerd"),
            "runs as uid 0", "uid 1000", "wait forever")
    result = runtime.run(node.config("id -u; echo ran", [core, mem], uid=1000), "containerd")
    assert result.returncode == 0 and result.stdout == "1000\nran\n", result.stderr


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_container_without_gpu_business_is_unchanged(runtime, node, flavour):
    script = "echo hello; id; ls /dev | grep -v -e core; env | sort"
    config = node.config(script, flavour=flavour, env={"GREETING": "hi"})
    plain = runtime.run(config, flavour, hooked=False)
    hooked = runtime.run(config, flavour)
    assert plain.returncode == hooked.returncode == 0, hooked.stderr
    assert hooked.stdout == plain.stdout and hooked.stderr == plain.stderr
    assert "hello" in hooked.stdout and not node.state_dir.exists()


def test_record_lives_while_the_container_runs(runtime, node):
    gate = node.root / "gate"
    gate.mkdir()
    _, response = node.allocate("nvidia.com/gpu", [4])
    config = node.config("while [ ! -e /gate/go ]; do sleep 0.05; done; echo ran", [response])
    config["mounts"].append({"destination": "/gate", "type": "bind", "source": str(gate),
                             "options": ["rbind", "rw"]})
    bundle, cid = runtime.bundle(config, "containerd")
    proc = runtime.oci.start(bundle, cid)
    try:
        deadline = time.monotonic() + 20
        while not node.records() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        records = node.records()
        assert records, f"no record while running: {proc.poll()} {proc.stderr.read() if proc.poll() else ''}"
        (record,) = records
        assert record["container_id"] == cid and record["pod"] == "app" and record["namespace"] == "team-a"
        assert record["pid"] > 0 and record["cgroup"].endswith(cid)
        assert record["grants"][0]["uuids"] == ["GPU-00000004-1111-2222-3333-444444444444"]
    finally:
        (gate / "go").touch()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == "ran\n", err
    assert node.records() == []
