"""The pods ``tessera demo`` runs: one of each kind of GPU request, CPU pods, and the ones Tessera refuses.

GPU pods are created without a node: the admission webhook routes them to Tessera's scheduler (and
completes ``mps-memory`` where only ``mps-core`` is asked), and the extender places and binds them.
CPU pods are bound directly (no default scheduler runs in the embedded cluster).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

DEMO_NAMESPACE = "default"
# Long-running services (restartPolicy Always, the default): what they were given, then they stay up.
# nvidia-smi is in a GPU container as NVIDIA's container toolkit puts it there (the simulated node's own).
GPU_COMMAND = ["sh", "-c", "nvidia-smi -L; ls /dev | grep nvidia; env | grep -E 'VISIBLE|MPS'; exec sleep 86400"]
CPU_COMMAND = ["sh", "-c", "ls /dev | grep -c nvidia || true; exec sleep 86400"]

# (name, resource limits, the node mode it needs): one of each kind a user asks for.
GPU_REQUESTS = [
    ("two-whole-gpus", {"nvidia.com/gpu": "2"}, "exclusive"),
    ("mig-3g", {"nvidia.com/mig-3g.40gb": "1"}, "mig"),
    ("mig-1g", {"nvidia.com/mig-1g.10gb": "1"}, "mig"),
    ("mps-50-8", {"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "8"}, "mps"),
    ("mps-30-20", {"nvidia.com/mps-core": "30", "nvidia.com/mps-memory": "20"}, "mps"),
    ("mps-25-auto", {"nvidia.com/mps-core": "25"}, "mps"),   # the webhook completes mps-memory
    ("mps-200", {"nvidia.com/mps-core": "200"}, "mps"),        # two whole GPUs; memory completed too
    ("timesliced", {"nvidia.com/gpu.shared": "1"}, "timeslice"),
]
# Refused at creation by the webhook, with the message kubectl apply would show.
REFUSED_REQUESTS = [("memory-without-cores", {"nvidia.com/mps-memory": "8"})]


@dataclass
class DemoPod:
    body: dict
    node: str | None = None           # bound directly to this node (CPU pods); None: Tessera schedules it
    expect_refusal: bool = False
    refusal: str = field(default="")


def pod(name: str, command: list[str], limits: dict | None = None, env: dict[str, str] | None = None) -> dict:
    container: dict = {"name": "main", "image": "busybox", "command": command,
                       "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if limits:
        container["resources"] = {"limits": dict(limits)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": DEMO_NAMESPACE},
            "spec": {"containers": [container]}}


def demo_pods(description, workdir: Path, real_runtime: bool) -> list[DemoPod]:
    """Every pod of the demo, in the order they are created."""
    modes = {n.mode for n in description.nodes}
    pods = [DemoPod(pod(name, GPU_COMMAND, limits)) for name, limits, mode in GPU_REQUESTS if mode in modes]
    pods += [DemoPod(pod(name, GPU_COMMAND, limits), expect_refusal=True) for name, limits in REFUSED_REQUESTS]
    pods += [DemoPod(pod(f"cpu-{n.name}", CPU_COMMAND), node=n.name) for n in description.nodes]
    first = description.nodes[0].name
    # A CUDA base image sets NVIDIA_VISIBLE_DEVICES=all: the pod still starts as a CPU pod and sees no GPU.
    pods.append(DemoPod(pod("cuda-image-cpu-pod", CPU_COMMAND, env={"NVIDIA_VISIBLE_DEVICES": "all"}), node=first))
    if real_runtime and os.geteuid() == 0:
        # A pod that bypasses the scheduler by mounting a GPU device node: tessera-hook refuses it.
        device = workdir / "host-dev" / "nvidia0"
        device.parent.mkdir(exist_ok=True)
        if not device.exists():
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(195, 0))
        sneaky = pod("gpu-without-a-grant", CPU_COMMAND)
        sneaky["spec"]["restartPolicy"] = "Never"   # refused once, not retried in a back-off loop
        sneaky["spec"]["volumes"] = [{"name": "gpu", "hostPath": {"path": str(device)}}]
        sneaky["spec"]["containers"][0]["volumeMounts"] = [{"name": "gpu", "mountPath": "/dev/nvidia0"}]
        pods.append(DemoPod(sneaky, node=first))
    return pods
