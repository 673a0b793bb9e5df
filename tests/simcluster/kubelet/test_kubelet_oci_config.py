"""The OCI config.json the simulated runtimes build: env order, annotation filtering, devices, runc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from simcluster.kubelet import oci
from tessera.kubeletapi import deviceplugin_pb2 as api

PATH = f"PATH={oci.DEFAULT_PATH}"

FIRST = api.ContainerAllocateResponse(
    envs={"NVIDIA_VISIBLE_DEVICES": "GPU-0", "SHARED": "from-plugin-1"},
    annotations={"tessera.io/grant": "signed-by-plugin", "other.io/x": "y"},
    devices=[api.DeviceSpec(container_path="/dev/nvidia0", host_path="/dev/null", permissions="rw")],
    mounts=[api.Mount(container_path="/dev/shm", host_path="/run/mps/shm", read_only=False)],
)
SECOND = api.ContainerAllocateResponse(
    envs={"SHARED": "from-plugin-2", "CUDA_MPS_PIPE_DIRECTORY": "/mps"},
    annotations={"tessera.io/grant": "second-response"},
    devices=[
        api.DeviceSpec(container_path="/dev/nvidia0", host_path="/dev/zero", permissions="rwm"),
        api.DeviceSpec(container_path="/dev/nvidia9", host_path="/nonexistent/nvidia9", permissions="rw"),
    ],
    mounts=[api.Mount(container_path="/usr/lib/nvidia", host_path="/opt/nvidia/lib", read_only=True)],
)
POD = {
    "metadata": {"name": "train", "namespace": "ml", "uid": "uid-1",
                 "annotations": {"tessera.io/grant": "forged-by-user", "team": "vision"}},
    "spec": {
        "securityContext": {"runAsUser": 2000, "runAsGroup": 3000},
        "containers": [
            {"name": "main", "command": ["python"], "args": ["train.py"],
             "env": [{"name": "SHARED", "value": "from-pod"}, {"name": "EPOCHS", "value": "3"}],
             "securityContext": {"runAsUser": 1000}},
            {"name": "idle"},
        ],
    },
}


def config(flavour: str, **kwargs) -> dict:
    return oci.build_config(POD, "main", [FIRST, SECOND], rootfs="/bundle/rootfs", flavour=flavour, **kwargs)


def test_merge_is_first_response_wins_per_key():
    merged = oci.merge_allocate_responses([FIRST, SECOND])
    assert merged.envs == [
        ("NVIDIA_VISIBLE_DEVICES", "GPU-0"), ("SHARED", "from-plugin-1"), ("CUDA_MPS_PIPE_DIRECTORY", "/mps")
    ]
    assert [(d.container_path, d.host_path) for d in merged.devices] == [
        ("/dev/nvidia0", "/dev/null"), ("/dev/nvidia9", "/nonexistent/nvidia9")
    ]
    assert dict(merged.annotations)["tessera.io/grant"] == "signed-by-plugin"


def test_containerd_keeps_plugin_env_first_and_both_copies_of_a_repeated_name():
    assert config("containerd")["process"]["env"] == [
        PATH,
        "NVIDIA_VISIBLE_DEVICES=GPU-0",
        "SHARED=from-plugin-1",
        "CUDA_MPS_PIPE_DIRECTORY=/mps",
        "SHARED=from-pod",
        "EPOCHS=3",
    ]


def test_crio_keeps_one_copy_with_the_pods_value():
    assert config("crio")["process"]["env"] == [
        PATH, "NVIDIA_VISIBLE_DEVICES=GPU-0", "SHARED=from-pod", "CUDA_MPS_PIPE_DIRECTORY=/mps", "EPOCHS=3"
    ]


def test_containerd_passes_only_allowed_plugin_annotations_and_no_pod_annotations():
    annotations = config("containerd")["annotations"]
    assert annotations == {
        "tessera.io/grant": "signed-by-plugin",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-name": "train",
        "io.kubernetes.cri.sandbox-namespace": "ml",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.container-name": "main",
    }
    assert "tessera.io/grant" not in config("containerd", container_annotations=[])["annotations"]
    assert config("containerd", container_annotations=["tessera.io/*"])["annotations"]["tessera.io/grant"] == (
        "signed-by-plugin"
    )
    assert config("containerd", pod_annotations=["team"])["annotations"]["team"] == "vision"


def test_crio_copies_pod_annotations_and_plugin_annotations():
    annotations = config("crio")["annotations"]
    assert annotations["team"] == "vision"
    assert annotations["other.io/x"] == "y"
    assert annotations["tessera.io/grant"] == "signed-by-plugin"
    assert {k: annotations[k] for k in annotations if k.startswith("io.kubernetes.")} == {
        "io.kubernetes.pod.name": "train",
        "io.kubernetes.pod.namespace": "ml",
        "io.kubernetes.pod.uid": "uid-1",
        "io.kubernetes.container.name": "main",
    }


def test_devices_mounts_user_and_args():
    cfg = config("containerd")
    null = os.stat("/dev/null")
    assert cfg["linux"]["devices"] == [{
        "path": "/dev/nvidia0", "type": "c", "major": os.major(null.st_rdev), "minor": os.minor(null.st_rdev),
        "fileMode": 0o666, "uid": 0, "gid": 0,
    }]
    assert cfg["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
    ]
    shm = [m for m in cfg["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/run/mps/shm",
                    "options": ["rbind", "rprivate", "rw"]}]
    assert {"destination": "/usr/lib/nvidia", "type": "bind", "source": "/opt/nvidia/lib",
            "options": ["rbind", "rprivate", "ro"]} in cfg["mounts"]
    assert cfg["process"]["user"] == {"uid": 1000, "gid": 3000}
    assert cfg["process"]["args"] == ["python", "train.py"]
    assert cfg["ociVersion"] == "1.0.2"
    assert {n["type"] for n in cfg["linux"]["namespaces"]} == {"mount", "pid", "ipc", "uts", "network"}


def test_defaults_for_a_bare_container_and_host_network():
    pod = {"metadata": {"name": "p", "uid": "u"}, "spec": {"hostNetwork": True, "containers": [{"name": "c"}]}}
    cfg = oci.build_config(pod, "c", [], rootfs="/r", flavour="crio")
    assert cfg["process"]["args"] == ["sh"]
    assert cfg["process"]["user"] == {"uid": 0, "gid": 0}
    assert cfg["process"]["env"] == [PATH]
    assert {n["type"] for n in cfg["linux"]["namespaces"]} == {"mount", "pid", "ipc"}
    assert "hostname" not in cfg


def test_unknown_flavour_and_container_are_refused():
    with pytest.raises(ValueError, match="docker"):
        oci.build_config(POD, "main", [], rootfs="/r", flavour="docker")
    with pytest.raises(KeyError, match="nope"):
        oci.build_config(POD, "nope", [], rootfs="/r")


@pytest.mark.skipif(shutil.which("runc") is None or shutil.which("busybox") is None or os.geteuid() != 0,
                    reason="needs runc, busybox and root")
def test_runc_runs_the_config_with_the_granted_device_env_and_user():
    bundle = tempfile.mkdtemp(dir="/tmp", prefix="tsk-oci-")
    try:
        os.makedirs(os.path.join(bundle, "rootfs", "bin"))
        shutil.copy(shutil.which("busybox"), os.path.join(bundle, "rootfs", "bin", "busybox"))
        pod = {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{
            "name": "c", "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "command": ["/bin/busybox", "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES; /bin/busybox id -u; "
                        "/bin/busybox stat -c %t:%T /dev/nvidia0"],
        }]}}
        cfg = oci.build_config(pod, "c", [FIRST], rootfs=os.path.join(bundle, "rootfs"))
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "bind"]  # the MPS shm dir is not on this host
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        name = f"tsk-{uuid.uuid4().hex[:12]}"
        try:
            run = subprocess.run(["runc", "run", "--bundle", bundle, name], capture_output=True, text=True, timeout=30)
        finally:
            subprocess.run(["runc", "delete", "-f", name], capture_output=True, timeout=30)
        if run.returncode != 0 and "cgroup" in run.stderr:
            pytest.skip(f"runc cannot create cgroups here: {run.stderr.strip()[:200]}")
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["GPU-0", "1000", "1:3"]
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def test_host_path_volumes_become_bind_mounts():
    pod = {"metadata": {"name": "p", "namespace": "ml", "uid": "u"},
           "spec": {"volumes": [{"name": "gpu", "hostPath": {"path": "/dev/nvidia0"}},
                                {"name": "scratch", "emptyDir": {}}],
                    "containers": [{"name": "main", "volumeMounts": [
                        {"name": "gpu", "mountPath": "/dev/nvidia0"},
                        {"name": "scratch", "mountPath": "/scratch"}]}]}}
    for flavour in oci.RUNTIME_FLAVOURS:
        mounts = oci.build_config(pod, "main", [], rootfs="/r", flavour=flavour)["mounts"]
        binds = [m for m in mounts if m["destination"] in ("/dev/nvidia0", "/scratch")]
        assert binds == [{"destination": "/dev/nvidia0", "type": "bind", "source": "/dev/nvidia0",
                          "options": ["rbind", "rprivate", "rw"]}]
