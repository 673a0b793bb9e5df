"""Placement: where a pod fits and which node and GPUs it gets. Pure: no sockets, HTTP, Kubernetes
client, threads or files; the server (the rest of ``extender/``) feeds it nodes and pods and turns its
answers into kube-scheduler's JSON and the ledger.

In the order a pod meets it: ``filter_view`` (``filter_nodes`` for a list of nodes) keeps the nodes it
fits on, with reasons for the others; ``node_scores`` scores them 0..10 by policy (``prioritize``: the
same scores as pairs); ``choose_gpus`` picks the GPUs on the chosen node; ``NodeState.assume`` holds
them. A ``Fleet`` keeps each answer per request shape and recomputes only the nodes that changed.
"""

from extender.placement.fit import Misfit, node_fit
from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel, ShapeBook, TaskShape
from extender.placement.grants import ContainerPlacement, GpuGrant, Placement
from extender.placement.namelists import NameList, NameLists
from extender.placement.nodestate import NodeState, StateError
from extender.placement.policies import (
    DEFAULT_POLICY,
    MODEL_POLICIES,
    POLICIES,
    FilterResult,
    PlacementError,
    PolicyContext,
    choose_gpus,
    filter_nodes,
    filter_view,
    resolve_policy,
)
from extender.placement.scoring import NodeScores, node_scores, prioritize

__all__ = [
    "DEFAULT_POLICY", "MODEL_POLICIES", "POLICIES", "ContainerPlacement", "FilterResult", "Fleet",
    "FragmentationModel", "GpuGrant", "Misfit", "NameList", "NameLists", "NodeScores", "NodeState",
    "Placement", "PlacementError", "PolicyContext", "ShapeBook", "StateError", "TaskShape", "choose_gpus",
    "filter_nodes", "filter_view", "node_fit", "node_scores", "prioritize", "resolve_policy",
]
