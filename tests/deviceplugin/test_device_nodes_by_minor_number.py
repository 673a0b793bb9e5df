"""Allocate names each GPU's device node by its minor number, and a MIG device's capability nodes.

The kernel numbers GPUs in the order it probed them, NVML in PCI order: GPU index 0 can be
``/dev/nvidia2``. The fake nodes here say so (``minor_numbers``), so a plugin that named nodes by
index would hand a container another tenant's GPU. A MIG device also needs
``/dev/nvidia-caps/nvidia-cap<N>`` for its GPU instance and compute instance, keyed by the GPU's
minor in the driver's tables, as NVIDIA's plugin passes them (never cap1/cap2, config and monitor).
Through the simulated kubelet and the plugin's real gRPC socket.
"""

from __future__ import annotations

import re

from dpharness import plugin_on_kubelet, wait_until
from tessera.fakenvml import load_description
from tessera.fakenvml.driverfiles import proc_files
from tessera.grant import load_key, verify

GPU, MIG1 = "nvidia.com/gpu", "nvidia.com/mig-1g.10gb"


def granted_paths(node, response) -> list[str]:
    (key, value), = response.annotations.items()
    return verify(key, value, load_key(str(node.grant_key))).paths


def test_each_gpu_gets_the_node_of_its_minor_number():
    with plugin_on_kubelet("a100-80gb-whole.yaml") as (node, manager, _):
        description = load_description(node.description)
        minors = {g.uuid: g.minor for g in description.gpus}
        assert any(g.minor != g.index for g in description.gpus), "the node's minors must differ from its indices"
        wait_until(lambda: manager.allocatable().get(GPU) == 8, what="8 GPUs registered")
        for n in range(8):
            response = manager.allocate(f"p{n}", f"p{n}", "default", "main", GPU, 1)
            uuid = dict(response.envs)["NVIDIA_VISIBLE_DEVICES"]
            gpu_nodes = [d.container_path for d in response.devices
                         if re.fullmatch(r"/dev/nvidia\d+", d.container_path)]
            assert gpu_nodes == [f"/dev/nvidia{minors[uuid]}"], f"GPU {uuid}"
            assert [d.host_path for d in response.devices if d.container_path in gpu_nodes] == gpu_nodes
            assert granted_paths(node, response)[0] == gpu_nodes[0], "the hook checks the grant's paths"


def _access_minor(text: str) -> int:
    return int(re.search(r"^DeviceFileMinor: (\d+)$", text, re.M).group(1))


def test_mig_device_gets_its_gpu_node_and_its_own_capability_nodes():
    with plugin_on_kubelet("h100-80gb-mig.yaml", **{"default-mode": "mig"}) as (node, manager, _):
        description = load_description(node.description)
        files = proc_files(description)
        instances = {m.uuid: (g, m.gpu_instance_id) for g in description.gpus for m in g.mig
                     if m.placed.profile.name == "1g.10gb"}
        wait_until(lambda: manager.allocatable().get(MIG1) == len(instances), what="every 1g.10gb registered")
        seen = set()
        for n in range(len(instances)):
            response = manager.allocate(f"m{n}", f"m{n}", "default", "main", MIG1, 1)
            mig = dict(response.envs)["NVIDIA_VISIBLE_DEVICES"]
            gpu, gi = instances[mig]
            caps = f"/proc/driver/nvidia/capabilities/gpu{gpu.minor}/mig/gi{gi}"
            expected = [f"/dev/nvidia{gpu.minor}",
                        f"/dev/nvidia-caps/nvidia-cap{_access_minor(files[caps + '/access'])}",
                        f"/dev/nvidia-caps/nvidia-cap{_access_minor(files[caps + '/ci0/access'])}"]
            paths = [d.container_path for d in response.devices]
            assert paths[:3] == expected, f"MIG {mig} on GPU index {gpu.index} (minor {gpu.minor}), GI {gi}"
            assert "/dev/nvidia-caps/nvidia-cap1" not in paths and "/dev/nvidia-caps/nvidia-cap2" not in paths
            assert granted_paths(node, response)[:3] == expected
            seen.update(expected[1:])
        assert len(seen) == 2 * len(instances), "no two MIG devices share a capability node"
