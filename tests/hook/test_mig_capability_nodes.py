"""A MIG container gets its GPU instance's and compute instance's capability nodes, and only those.

NVIDIA's device plugin passes ``/dev/nvidia-caps/nvidia-cap<N>`` for the GI and the CI of a MIG
device beside the GPU's node; so does Tessera's, inside the signed grant. The hook lets a granted
MIG container open its own capability nodes (ENXIO: allowed, no driver) and refuses a spec that
carries another instance's, or a capability node without a grant.
"""

from __future__ import annotations

import pytest

from tessera.fakenvml.driverfiles import CAPS_MAJOR
from tessera.migcaps import capability_device

FLAVOURS = ["containerd", "crio"]


def probe(*paths: str) -> str:
    """Open each path; print what happened (ENXIO: the cgroup allows it; EPERM: it does not)."""
    return "".join(f"cat {p} 2>&1 | grep -o -e 'No such device or address' -e 'Operation not permitted' "
                   f"-e 'No such file or directory' | sed 's|^|{p}: |'; " for p in paths) + "echo ran"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mig_container_opens_its_capability_nodes(runtime, node, flavour):
    grant, response = node.allocate_mig(1, 2)
    mine = [capability_device(cap) for cap in node.mig_caps(1, 2)]
    assert grant.paths == ["/dev/nvidia1", *mine]
    result = runtime.run(node.config(probe("/dev/nvidia1", *mine), [response], flavour=flavour), flavour)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["/dev/nvidia1: No such device or address",
                     *(f"{path}: No such device or address" for path in mine), "ran"]


def test_another_instances_capability_node_is_refused(node):
    _, response = node.allocate_mig(0, 1)
    config = node.config("true", [response])
    other = node.mig_caps(0, 2)[0]
    config["linux"]["devices"].append({"path": capability_device(other), "type": "c", "major": CAPS_MAJOR,
                                       "minor": other, "fileMode": 0o444, "uid": 0, "gid": 0})
    result = node.run_hook(config, "containerd")
    assert result.returncode == 1
    assert f"{capability_device(other)} ({CAPS_MAJOR}:{other}), which no grant covers" in result.stderr
    assert node.records() == []


def test_capability_node_without_a_grant_is_refused(node):
    config = node.config("true")
    cap = node.mig_caps(0, 1)[1]
    config["linux"]["devices"].append({"path": capability_device(cap), "type": "c", "major": CAPS_MAJOR, "minor": cap})
    result = node.run_hook(config, "crio")
    assert result.returncode == 1
    assert f"no Tessera grant but its spec gives it {capability_device(cap)}" in result.stderr
