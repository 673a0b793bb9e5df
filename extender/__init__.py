"""The Tessera scheduler extender and admission webhook: places pods on nodes and GPUs, writes the ledger.

The placement core, in the order a pod meets it: ``pod_request`` reads the pod, ``filter_nodes`` keeps
the nodes it fits on (with reasons for the others), ``prioritize`` scores them 0..10 by policy,
``choose_gpus`` picks the GPUs on the chosen node, and ``NodeState.assume`` holds them.
"""

from extender.fit import Misfit, node_fit
from extender.fleet import Fleet
from extender.fragmentation import FragmentationModel, ShapeBook, TaskShape
from extender.nodestate import NodeState, StateError
from extender.placement import ContainerPlacement, GpuAllotment, Placement
from extender.policies import (
    POLICIES,
    FilterResult,
    PlacementError,
    PolicyContext,
    choose_gpus,
    filter_nodes,
    prioritize,
)
from tessera.podrequest import GpuAsk, ModelConstraint, PodRequest, RequestError, pod_request

__all__ = [
    "POLICIES", "ContainerPlacement", "FilterResult", "Fleet", "FragmentationModel", "GpuAsk", "GpuAllotment",
    "Misfit", "ModelConstraint", "NodeState", "Placement", "PlacementError", "PodRequest", "PolicyContext",
    "RequestError", "ShapeBook", "StateError", "TaskShape", "choose_gpus", "filter_nodes", "node_fit",
    "pod_request", "prioritize",
]
