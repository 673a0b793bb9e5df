"""A real Kubernetes control plane for the tests, the benches and ``tessera demo --control-plane real``:
etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from upstream (scripts/build-kube.sh),
started on loopback with certificates of their own, Tessera installed as deploy/ installs it, and
simulated nodes registered in it.

    with realcluster.running(description) as cluster:
        ...   # cluster.kubeconfig is the admin's; cluster.kubectl(...) runs the built kubectl
"""

from realcluster.binaries import Binaries, BinariesMissing, find_binaries
from realcluster.cluster import RealCluster, running

__all__ = ["Binaries", "BinariesMissing", "RealCluster", "find_binaries", "running"]
