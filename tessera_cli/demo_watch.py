"""What ``tessera demo`` waits for, node by node, as :class:`simcluster.readiness.Awaited` items.

Each names the node and the process doing the work, so a wait that cannot end says which node and
which log to read; each reports a phase (what the node shows so far), so a slow node reads as slow.
"""

from __future__ import annotations

import json

from simcluster.readiness import Awaited
from tessera_cli.demo_pods import DEMO_NAMESPACE, DemoPod


def _raw(response) -> dict:
    return json.loads(response.data)


def node_registered(core, name: str) -> Awaited:
    """The node's simulated kubelet (in this process) registered its Node."""
    def ready() -> bool:
        return any(n["metadata"]["name"] == name for n in _raw(core.list_node(_preload_content=False))["items"])
    return Awaited(f"the kubelet of node {name}", ready)


NOT_READY_TAINT = "node.kubernetes.io/not-ready"   # a real control plane's node lifecycle controller lifts it


def _tessera_allocatable(node: dict) -> dict[str, str]:
    return {k: v for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()
            if k.startswith("nvidia.com/")}


def resources_advertised(core, cluster, plugins, name: str) -> Awaited:
    """The node's plugin registered, its Node shows a Tessera resource in allocatable and carries no
    not-ready taint (a scheduler would keep GPU pods off it); the phase is what its kubelet's device manager
    holds so far (plugins registered, devices listed)."""
    kubelet = cluster.nodes[name].kubelet

    def ready() -> bool:
        node = _raw(core.read_node(name, _preload_content=False))
        tainted = any(t.get("key") == NOT_READY_TAINT for t in (node.get("spec") or {}).get("taints") or [])
        return not tainted and any(v != "0" for v in _tessera_allocatable(node).values())

    def phase() -> object:
        return sorted(kubelet.devices.capacity().items()) if kubelet else None
    return plugins.awaited(name, ready, phase)


def _pod_phase(pod: dict) -> tuple:
    status = pod.get("status") or {}
    states = [next(iter(c.get("state") or {"unknown": {}})) for c in status.get("containerStatuses") or []]
    return pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName"), status.get("phase"), tuple(states)


def _settled(pod: dict) -> bool:
    """Running, Succeeded or Failed, or a container waiting with the runtime's refusal."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Running", "Succeeded", "Failed"):
        return True
    waiting = [(c.get("state") or {}).get("waiting") for c in status.get("containerStatuses") or []]
    return any(w is not None and w.get("reason") != "ContainerCreating" for w in waiting)


def pods_settled(core, cluster, plugins, sched, admitted: list[DemoPod]) -> list[Awaited]:
    """The demo's admitted pods: placed by the extender (awaited from it), then admitted by each node's kubelet
    through its plugin and started by the runtime (awaited from that node's plugin)."""
    names = {p.body["metadata"]["name"] for p in admitted}

    def demo_pods() -> list[dict]:
        items = _raw(core.list_namespaced_pod(DEMO_NAMESPACE, _preload_content=False))["items"]
        return [p for p in items if p["metadata"]["name"] in names]

    def on(node: str | None) -> list[dict]:
        return [p for p in demo_pods() if (p.get("spec") or {}).get("nodeName") == node]

    def placed() -> bool:
        return not on(None) and len(demo_pods()) == len(names)

    def settled(node: str) -> bool:
        return placed() and all(_settled(p) for p in on(node))

    awaited = [sched.awaited(placed, lambda: sorted(_pod_phase(p) for p in on(None)),
                             task="the demo pods were placed")]
    awaited += [plugins.awaited(name, lambda n=name: settled(n), lambda n=name: sorted(_pod_phase(p) for p in on(n)),
                                task=f"the pods on node {name} were admitted and started (or refused)")
                for name in cluster.nodes]
    return awaited
