"""A GPU's NUMA node is the one the kernel gives its PCI device (what NVIDIA's device plugin reads and the
kubelet's topology hints align CPUs with); NVML's ``nvmlDeviceGetNumaNodeId`` only where the kernel does not
say. On Grace Hopper NVML answers the GPU's own memory node, which is not the CPUs' it sits beside."""

from __future__ import annotations

from contextlib import contextmanager

import pynvml

from tessera import migcaps
from tessera.fakenvml import install, parse_description
from tessera.nvml import Nvml
from tessera.topology import numa_node_path

TWO_SOCKETS = {"node": "two-sockets", "gpus": [{"model": "H100-SXM5-80GB", "count": 2, "numa": 0},
                                               {"model": "H100-SXM5-80GB", "count": 2, "numa": 1}]}


@contextmanager
def replaced(owner, name: str, value):
    """``owner.name`` set to ``value`` for the block, then put back: by hand, not by monkeypatch, whose undo
    would come after the fake's uninstall and put the fake's function back on pynvml."""
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


def read_numa() -> dict[int, int | None]:
    with Nvml() as nvml:
        return {g.index: g.numa_node for g in nvml.read_gpus()}


def test_the_kernels_numa_node_wins_over_nvmls_gpu_memory_node():
    install(parse_description(TWO_SOCKETS))
    with replaced(pynvml, "nvmlDeviceGetNumaNodeId", lambda handle: 4):  # Grace Hopper: the GPU's memory node
        assert read_numa() == {0: 0, 1: 0, 2: 1, 3: 1}


def test_nvml_answers_where_the_kernel_has_no_numa_node():
    description = parse_description(TWO_SOCKETS)
    install(description)
    files = {numa_node_path(g.pci_bus_id): "-1\n" for g in description.gpus}  # the kernel: no NUMA affinity
    with replaced(migcaps, "read_driver_file", files.get):
        assert read_numa() == {0: 0, 1: 0, 2: 1, 3: 1}  # the fake's NVML answers the description's nodes
        with replaced(pynvml, "nvmlDeviceGetNumaNodeId", lambda handle: -1):
            assert read_numa() == {0: None, 1: None, 2: None, 3: None}
