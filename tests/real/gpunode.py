"""The real node's fake GPUs, and what a container on it should see.

The node is realcluster.nodeside's mixed node (seven A100s: five in four modes through the device plugin,
two through the DRA driver, one whole and one shared through MPS). A probe container
prints its GPU device nodes (path, major, minor), its NVIDIA/CUDA variables, its mounts and its uid;
:func:`expected_devices` derives from the fake NVML's description which device nodes a grant of
those UUIDs must give, independently of the device plugin.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from realcluster.nodeside import (
    MIXED_NODE_ALLOCATABLE, MIXED_NODE_DRA_CONFIG, MIXED_NODE_PLUGIN_CONFIG, mixed_node_description,
)
from tessera import ANNOTATION_ALLOCATED
from tessera.fakenvml import load_description
from tessera.fakenvml.state import FakeNode
from tessera.fakenvml.driverfiles import (
    CAPS_MAJOR, NVIDIA_MAJOR, NVIDIACTL_MINOR, UVM_MAJOR, ci_capability_minor, gi_capability_minor,
)

NODE = "real-node-1"
# The real node is tainted so that the rest of the tier's pods stay on the simulated nodes they expect.
TAINT = {"key": "tessera.io/real-node", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": TAINT["effect"]}
IMAGE = "tessera.local/busybox:test"
DESCRIPTION = mixed_node_description(NODE)
PLUGIN_CONFIG = MIXED_NODE_PLUGIN_CONFIG
DRA_CONFIG = MIXED_NODE_DRA_CONFIG
DRA_GPUS = MIXED_NODE_DRA_CONFIG["gpus"]
ALLOCATABLE = MIXED_NODE_ALLOCATABLE
MPS_USER = 1000   # deploy/'s --mps-user
PROBE = ("for d in $(find /dev -name 'nvidia*' -type c); do stat -c '%n %t %T' $d; done; echo ---; "
         "env | grep -E '^(NVIDIA|CUDA)_' | sort; echo ---; awk '{print $4, $5}' /proc/self/mountinfo; "
         "echo ---; id -u")


def probe_container(name: str, limits: dict[str, Any], *, env: dict[str, str] | None = None,
                    command: str = PROBE) -> dict:
    """A container of the local busybox image that runs ``command`` (the probe by default)."""
    container: dict[str, Any] = {"name": name, "image": IMAGE, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", command],
                                 "resources": {"limits": {k: str(v) for k, v in limits.items()}}}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return container


def node_pod(name: str, namespace: str, containers: list[dict], *, run_as: int | None = None,
             restart: str = "Never") -> dict:
    """A pod for the real node (its hostname label and taint), written as a user writes it: the webhook
    routes it."""
    spec: dict[str, Any] = {"restartPolicy": restart, "hostNetwork": True, "tolerations": [TOLERATION],
                            "nodeSelector": {"kubernetes.io/hostname": NODE}, "containers": containers}
    if run_as is not None:
        spec["securityContext"] = {"runAsUser": run_as}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@dataclass
class Probe:
    """What a probe container printed."""

    devices: dict[str, tuple[int, int]]   # /dev path -> (major, minor)
    env: dict[str, str]
    mounts: dict[str, str]                # mount point -> its source (root within its file system)
    uid: int


def parse_probe(text: str) -> Probe:
    """The probe's output, parsed."""
    parts = text.split("---\n")
    if len(parts) != 4:
        raise ValueError(f"not a probe's output: {text!r}")
    devices = {}
    for line in parts[0].splitlines():
        path, major, minor = line.split()
        devices[path] = (int(major, 16), int(minor, 16))
    env = dict(line.split("=", 1) for line in parts[1].splitlines() if "=" in line)
    mounts = {}
    for line in parts[2].splitlines():
        source, _, point = line.partition(" ")
        mounts[point] = source
    return Probe(devices, env, mounts, int(parts[3].strip()))


def allocated_uuids(pod: dict, container: str) -> dict[str, list[str]]:
    """Resource -> the GPU or MIG UUIDs the device plugin recorded for ``container`` (tessera.io/allocated)."""
    doc = json.loads(pod["metadata"]["annotations"][ANNOTATION_ALLOCATED])
    return {resource: entry["gpus"] for resource, entry in doc["containers"][container].items()}


def expected_devices(description_path: Path, uuids: list[str]) -> dict[str, tuple[int, int]]:
    """The device nodes a container granted ``uuids`` must have, from the node's description: each GPU's
    /dev/nvidia<minor> (a MIG instance's parent GPU, plus its GPU- and compute-instance capability
    nodes), and the driver's control and UVM nodes. MIG devices are the node's now: laid out by the
    description or made since (by the DRA driver, read from the fake node's control file)."""
    description = load_description(description_path)
    live = FakeNode(description)
    devices = {"/dev/nvidiactl": (NVIDIA_MAJOR, NVIDIACTL_MINOR), "/dev/nvidia-uvm": (UVM_MAJOR, 0),
               "/dev/nvidia-uvm-tools": (UVM_MAJOR, 1)}
    for uuid in uuids:
        for state in live.gpus:
            gpu = state.spec
            if gpu.uuid == uuid:
                devices[f"/dev/nvidia{gpu.minor}"] = (NVIDIA_MAJOR, gpu.minor)
            for mig in state.mig:
                if mig.uuid == uuid:
                    devices[f"/dev/nvidia{gpu.minor}"] = (NVIDIA_MAJOR, gpu.minor)
                    for cap in (gi_capability_minor(gpu.minor, mig.gpu_instance_id),
                                ci_capability_minor(gpu.minor, mig.gpu_instance_id, 0)):
                        devices[f"/dev/nvidia-caps/nvidia-cap{cap}"] = (CAPS_MAJOR, cap)
    return devices


def scrape(url: str) -> list[tuple[str, dict, float]]:
    """Every sample of the exporter's /metrics: (name, labels, value)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def host_pids_in(container_id: str, comm: str) -> list[int]:
    """Host PIDs of the processes named ``comm`` whose cgroup is the container's."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm and container_id in (entry / "cgroup").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids
