"""The real tier: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from upstream
(scripts/build-kube.sh), Tessera installed as deploy/ installs it, the default cluster's four nodes
registered as kubelets with their device plugins. One cluster for the whole tier (it takes tens of
seconds to start); each test works in a namespace of its own.

Skips, with the reason, where the binaries are missing: `bash scripts/dev.sh test` builds them when Go
is installed, or set KUBEBUILDER_ASSETS to a folder that has them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from realtier import binaries_or_skip  # noqa: E402 - found through the path above

_namespaces = itertools.count()


def pytest_collection_modifyitems(session, config, items):
    """The real tier runs after every other test: its one cluster lives until the session ends, and the
    log lines its simulated kubelets and daemons keep writing must not land in another test's captured
    output (seen: a line in the middle of test_fake_nvml_cli's table)."""
    here = Path(__file__).parent
    real = [item for item in items if here in item.path.parents]
    if real:
        ids = {id(item) for item in real}
        items[:] = [item for item in items if id(item) not in ids] + real


@pytest.fixture(scope="session")
def real_cluster():
    """The running real cluster with Tessera and the default description's nodes and device plugins."""
    import realcluster
    from simcluster.plugins import device_plugins

    binaries = binaries_or_skip()
    # Containers run for real under runc with tessera-hook where this machine can (root, runc, busybox).
    oci_runtime = "runc" if os.geteuid() == 0 and shutil.which("runc") and shutil.which("busybox") else None
    # DRA scoring on (off by default): tests/real/test_dra_pods_scored_by_tessera.py places claim pods by it.
    with realcluster.running(binaries=binaries, oci_runtime=oci_runtime,
                             extender_flags=("--dra-scoring",)) as cluster, device_plugins(
            cluster, extender_public_key=str(cluster.tessera.signing_public_key)) as plugins:
        cluster.plugins = plugins
        _wait_for_gpu_capacity(cluster)
        yield cluster


def _wait_for_gpu_capacity(cluster) -> None:
    core = cluster.core_v1()
    wanted = {"a100-whole": "nvidia.com/gpu", "h100-mig": "nvidia.com/mig-1g.10gb",
              "a100-mps": "nvidia.com/mps-core", "t4-timeslice": "nvidia.com/gpu.shared"}

    def every_node_advertises() -> bool:
        nodes = {n.metadata.name: n for n in core.list_node().items}
        return all(name in nodes and int((nodes[name].status.allocatable or {}).get(resource, "0")) > 0
                   and not any(t.key == "node.kubernetes.io/not-ready" for t in nodes[name].spec.taints or [])
                   for name, resource in wanted.items())

    cluster.wait_for(every_node_advertises, timeout_s=180, interval_s=0.5,
                     what="every node Ready, untainted, with its Tessera resources")


@pytest.fixture(scope="session")
def real_node(real_cluster):
    """A real kubelet and containerd (realcluster.node) registered as Node real-node-1; skips, with the
    reason, where this machine cannot run one (not root, no runc, no CNI plugins, no node binaries)."""
    from realcluster.node import node_prerequisites, start_node, stop_node
    from gpunode import NODE, TAINT

    missing = node_prerequisites(real_cluster.binaries)
    if missing:
        pytest.skip("this machine cannot run a real node: needs " + "; ".join(missing))
    node = start_node(real_cluster, NODE, taints=[TAINT])
    yield node
    stop_node(node)
    real_cluster.kubectl("delete", "node", NODE, "--wait=false", check=False)


@pytest.fixture(scope="session")
def gpu_node(real_cluster, real_node):
    """Tessera's node side installed on the real node as deploy/ installs it (realcluster.nodeside), its
    Tessera resources allocatable."""
    from realcluster.nodeside import install_node_side, stop_node_side
    from gpunode import ALLOCATABLE, DESCRIPTION, DRA_CONFIG, PLUGIN_CONFIG

    side = install_node_side(real_cluster, real_node, DESCRIPTION, PLUGIN_CONFIG, dra_config=DRA_CONFIG)
    core = real_cluster.core_v1()

    def advertised() -> bool:
        allocatable = core.read_node(real_node.name).status.allocatable or {}
        return all(allocatable.get(k) == v for k, v in ALLOCATABLE.items())

    try:
        real_cluster.wait_for(advertised, timeout_s=120, interval_s=0.5,
                              what=f"{real_node.name} allocatable {ALLOCATABLE}")
    except BaseException:
        stop_node_side(side)
        raise
    yield side
    stop_node_side(side)


@pytest.fixture(scope="session")
def dra_node(real_cluster, gpu_node):
    """Tessera's DRA driver on the real node beside its device plugin (realcluster.draside), registered
    with the real kubelet and its ResourceSlice published."""
    from realcluster.draside import start_dra_plugin

    dra = start_dra_plugin(real_cluster, gpu_node)
    yield dra
    dra.plugin.stop()


@pytest.fixture
def namespace(real_cluster):
    """A namespace of this test's own, deleted afterwards."""
    name = f"t{next(_namespaces)}"
    real_cluster.kubectl("create", "namespace", name)
    real_cluster.wait_for(lambda: real_cluster.has_service_account(name), what=f"ServiceAccount {name}/default")
    yield name
    # Waited for: its pods hold GPUs of the one cluster every test shares until their kubelet lets go.
    real_cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s", check=False)

