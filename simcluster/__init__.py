"""The embedded cluster: everything that stands in for Kubernetes or GPU hardware, for the demo and tests.

Open it as one context manager::

    import simcluster

    with simcluster.running() as cluster:   # or simcluster.running(description, light=True)
        v1 = cluster.core_v1()              # a real ``kubernetes`` client
        simcluster.poll_until(lambda: v1.list_node().items, what="the nodes")

Public names (loaded on first use, so ``python -m simcluster.apiserver.serve`` and the fake MPS daemon
start without the kubelets): :func:`running`, :class:`Cluster`, :class:`SimNode`, :func:`poll_until`
(:mod:`simcluster.embedded`); :class:`ClusterDescription`, :class:`NodeSpec`, :func:`load_cluster`,
:func:`load_trace_nodes` (:mod:`simcluster.cluster`). The rooms inside: :mod:`~simcluster.apiserver` (the API server),
:mod:`~simcluster.kubelet` (the simulated kubelet), :mod:`~simcluster.simscheduler` (in place of
kube-scheduler), :mod:`~simcluster.fakemps` (MPS control daemon), :mod:`~simcluster.lightnodes` and
:mod:`~simcluster.fakenodes` (nodes without and with a fake GPU), :mod:`~simcluster.plugins`,
:mod:`~simcluster.extenders`, :mod:`~simcluster.exporters` and :mod:`~simcluster.scheduling` (Tessera's
daemons on it), :mod:`~simcluster.replay` and :mod:`~simcluster.trace` (the Alibaba trace).
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "running": "simcluster.embedded", "Cluster": "simcluster.embedded", "SimNode": "simcluster.embedded",
    "poll_until": "simcluster.embedded", "ClusterDescription": "simcluster.cluster", "NodeSpec": "simcluster.cluster",
    "load_cluster": "simcluster.cluster", "load_trace_nodes": "simcluster.cluster",
})
