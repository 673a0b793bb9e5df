"""A fake GPU node for the hook's tests: a node key, fake device nodes, and the kubelet's config.json.

Device nodes are real character devices (major 195, and MIG capability nodes ``nvidia-caps/nvidia-cap<N>``
for two GPU instances on each of GPUs 0 and 1) made in a temp dir on the host; with no driver,
opening one the device cgroup permits fails with ENXIO ("No such device or address"), and one it
denies with EPERM ("Operation not permitted"): that tells the cases apart.

``config.json`` comes from the simulated kubelet's own ``build_config`` (containerd and CRI-O
shapes), fed ContainerAllocateResponses made the way Tessera's device plugin makes them: the
grant's environment (``tessera.grant.grant_env``), its signed annotation, and its device nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from simcluster.kubelet import oci
from simcluster.kubelet.runtime import OciRuntime, busybox_rootfs, unavailable, with_hook, write_bundle
from tessera.fakenvml.driverfiles import CAPS_MAJOR, ci_capability_minor, gi_capability_minor
from tessera.grant import Grant, encode, generate_key, grant_env, new_grant
from tessera.migcaps import capability_device

GPU_UUIDS = [f"GPU-{i:08d}-1111-2222-3333-444444444444" for i in range(8)]
MPS_USER = 1000
PIPE = "/run/tessera/mps/pipe"
MIG_INSTANCES = [(gpu, gi) for gpu in (0, 1) for gi in (1, 2)]  # (GPU minor, GPU-instance id) on the fake node


def mig_uuid(gpu: int, gi: int) -> str:
    return f"MIG-{gpu:08d}-{gi:04d}-2222-3333-444444444444"
REPO = Path(__file__).resolve().parents[2]


class FakeNode:
    """One GPU node: its key, its fake /dev, its hook state directory, and a busybox rootfs."""

    def __init__(self, root: Path, name: str = "gpu-node-1") -> None:
        self.root, self.name = root, name
        self.key_path = root / "node-grant.key"
        self.key = generate_key(str(self.key_path))
        self.state_dir = root / "state"
        self.dev = root / "hostdev"
        self.dev.mkdir()
        for minor in range(8):
            os.mknod(self.dev / f"nvidia{minor}", 0o666 | 0o020000, os.makedev(195, minor))
        os.mknod(self.dev / "nvidiactl", 0o666 | 0o020000, os.makedev(195, 255))
        (self.dev / "nvidia-caps").mkdir()
        for gpu, gi in MIG_INSTANCES:
            for cap in self.mig_caps(gpu, gi):
                os.mknod(self.dev / "nvidia-caps" / f"nvidia-cap{cap}", 0o444 | 0o020000, os.makedev(CAPS_MAJOR, cap))
        self.rootfs = root / "rootfs"

    def flags(self, flavour: str) -> list[str]:
        return ["--runtime", flavour, "--state-dir", str(self.state_dir), "--grant-key-path", str(self.key_path),
                "--mps-user", str(MPS_USER)]

    def allocate(self, resource: str, gpus: list[int], *, core: int | None = None, mem_gib: int | None = None,
                 key: bytes | None = None) -> tuple[Grant, object]:
        """A grant and the ContainerAllocateResponse Tessera's plugin would answer for it."""
        paths = [f"/dev/nvidia{i}" for i in gpus]
        if resource == "nvidia.com/mps-core":
            ids = [f"{GPU_UUIDS[gpus[0]]}::core::{n}" for n in range(core or 0)]
        elif resource == "nvidia.com/mps-memory":
            ids = [f"{GPU_UUIDS[gpus[0]]}::mem::{n}" for n in range(mem_gib or 0)]
        else:
            ids = [GPU_UUIDS[i] for i in gpus]
        grant = new_grant(resource, self.name, ids, [GPU_UUIDS[i] for i in gpus], paths, core=core,
                          mem_gib=mem_gib, pipe=PIPE if resource == "nvidia.com/mps-core" else None)
        return grant, self.response(grant, key)

    @staticmethod
    def mig_caps(gpu: int, gi: int) -> tuple[int, int]:
        """The GI's and its compute instance 0's nvidia-caps minors, as the driver's mig-minors table has them."""
        return gi_capability_minor(gpu, gi), ci_capability_minor(gpu, gi, 0)

    def allocate_mig(self, gpu: int, gi: int) -> tuple[Grant, object]:
        """A MIG device's grant and response, as the plugin gives them: the GPU's node and the GI's and CI's
        capability nodes (/dev/nvidia-caps/nvidia-cap<N>)."""
        paths = [f"/dev/nvidia{gpu}", *(capability_device(cap) for cap in self.mig_caps(gpu, gi))]
        grant = new_grant("nvidia.com/mig-1g.10gb", self.name, [mig_uuid(gpu, gi)], [mig_uuid(gpu, gi)], paths)
        return grant, self.response(grant)

    def response(self, grant: Grant, key: bytes | None = None):
        """The ContainerAllocateResponse carrying ``grant``: its environment, annotation and device nodes."""
        api = oci.api
        paths = [*grant.paths, "/dev/nvidiactl"]
        devices = [api.DeviceSpec(container_path=p, host_path=str(self.dev / p.removeprefix("/dev/")),
                                  permissions="rw") for p in paths]
        return api.ContainerAllocateResponse(envs=grant_env(grant), devices=devices,
                                             annotations=encode(grant, key or self.key))

    def config(self, script: str, responses=(), *, flavour: str = "containerd", env: dict | None = None,
               annotations: dict | None = None, uid: int = 0, pod_uid: str | None = None,
               name: str = "app") -> dict:
        """config.json for a one-container pod running ``sh -c script``, as the kubelet's runtime builds it."""
        pod = {
            "metadata": {"name": name, "namespace": "team-a", "uid": pod_uid or str(uuid.uuid4()),
                         "annotations": dict(annotations or {})},
            "spec": {"containers": [{
                "name": "main", "command": ["sh", "-c", script],
                "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                "securityContext": {"runAsUser": uid},
            }]},
        }
        config = oci.build_config(pod, "main", list(responses), rootfs=str(self.rootfs), flavour=flavour)
        return config

    def run_hook(self, config: dict, flavour: str, stage: str = "createRuntime", pid: int = 0,
                 extra: list[str] = ()) -> subprocess.CompletedProcess:
        """The hook alone, as a runtime runs it: OCI state on stdin, the bundle on disk."""
        bundle = self.root / f"bundle-{uuid.uuid4().hex[:8]}"
        write_bundle(bundle, config)
        state = {"ociVersion": "1.0.2", "id": bundle.name, "pid": pid, "bundle": str(bundle), "status": "creating"}
        return subprocess.run([sys.executable, "-m", "hook.main", stage, *self.flags(flavour), *extra],
                              input=json.dumps(state), capture_output=True, text=True, timeout=30, cwd=REPO)

    def records(self) -> list[dict]:
        if not self.state_dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.state_dir.glob("*.json"))]


@pytest.fixture
def node(tmp_path) -> FakeNode:
    if os.geteuid() != 0:
        pytest.skip("making fake GPU device nodes needs root (mknod)")
    return FakeNode(tmp_path)


class RealRuntime:
    """runc or crun running the node's bundles with the hook configured."""

    def __init__(self, name: str, node: FakeNode) -> None:
        self.name, self.node = name, node
        self.oci = OciRuntime(name, state_root=node.root / f"{name}-state")
        busybox_rootfs(node.rootfs)

    def bundle(self, config: dict, flavour: str, hooked: bool = True) -> tuple[Path, str]:
        cid = f"t{uuid.uuid4().hex[:12]}"
        if hooked:
            config = with_hook(config, self.node.flags(flavour))
        return write_bundle(self.node.root / cid, config), cid

    def run(self, config: dict, flavour: str, hooked: bool = True):
        bundle, cid = self.bundle(config, flavour, hooked)
        return self.oci.run(bundle, cid, timeout=30)


@pytest.fixture(params=["runc", "crun"])
def runtime(request, node) -> RealRuntime:
    reason = unavailable(request.param)
    if reason is None and not Path("/bin/busybox").exists():
        reason = "busybox is not installed (/bin/busybox)"
    if reason:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    return RealRuntime(request.param, node)
