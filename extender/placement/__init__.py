"""Placement: where a pod fits and which node and GPUs it gets. Pure: no sockets, HTTP, Kubernetes
client, threads or files; the server (the rest of ``extender/``) feeds it nodes and pods and turns its
answers into kube-scheduler's JSON and the ledger.

In the order a pod meets it: ``filter_view`` (``filter_nodes`` for a list of nodes) keeps the nodes it
fits on, with reasons for the others; ``node_scores`` scores them 0..10 by policy (``prioritize``: the
same scores as pairs); ``choose_gpus`` picks the GPUs on the chosen node; ``NodeState.assume`` holds
them. A ``Fleet`` keeps each answer per request shape and recomputes only the nodes that changed.
``shapes`` reads typical task shapes as written (config, ``tessera inspect --shape``).
"""

from extender.placement.fit import Misfit, node_fit
from extender.placement.fleet import Fleet
from extender.placement.fragmentation import FragmentationModel, ShapeBook, TaskShape, idle_cores, shape_of
from extender.placement.grants import ContainerPlacement, GpuAllotment, Placement
from extender.placement.namelists import NameList, NameLists
from extender.placement.nodestate import DEFAULT_TIMESLICE_REPLICAS, GpuState, NodeState, StateError
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
from extender.placement.shapes import DEFAULT_SHAPES, ShapeError, describe, learned_shapes, shape_counts

__all__ = [
    "DEFAULT_POLICY", "DEFAULT_SHAPES", "DEFAULT_TIMESLICE_REPLICAS", "MODEL_POLICIES", "POLICIES",
    "ContainerPlacement", "FilterResult", "Fleet", "FragmentationModel", "GpuAllotment", "GpuState", "Misfit",
    "NameList", "NameLists", "NodeScores", "NodeState", "Placement", "PlacementError", "PolicyContext",
    "ShapeBook", "ShapeError", "StateError", "TaskShape", "choose_gpus", "describe", "filter_nodes",
    "filter_view", "idle_cores", "learned_shapes", "node_fit", "node_scores", "prioritize", "resolve_policy",
    "shape_counts", "shape_of",
]
