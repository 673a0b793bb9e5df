"""Where kube-scheduler serves ``nvidia.com/gpu`` through Tessera's DRA driver, and which pods it served so.

Kubernetes 1.37 maps an extended resource to DRA devices (DeviceClass ``spec.extendedResourceName``, deploy/
``dra-extended-resources.yaml``): a plain pod asking ``nvidia.com/gpu: 1`` gets a ResourceClaim that
kube-scheduler makes and allocates itself, on each node whose ``status.allocatable`` has no
``nvidia.com/gpu`` (absent or 0); where a device plugin advertises it, the device plugin serves it
(kube-scheduler's NodeResourcesFit, ``shouldDelegateResourceToDRA``). kube-scheduler runs its own
filters, the DRA allocator's included, before it asks an extender, so a node reaching the extender's
filter this way already has a free device for the pod.

The extender leaves such a node to kube-scheduler (``dra_node``): the admin chose DRA for it (label
``tessera.io/dra-driver=true``, which also places the driver's DaemonSet) and it advertises no
device-plugin ``nvidia.com/gpu``. Only a pod whose every Tessera ask is whole GPUs (``dra_request``)
passes there. Its bind writes no assignment, and only once the pod's status names the claim
kube-scheduler allocated for each of those containers (``claim_status_problem``): the kubelet then
leaves ``nvidia.com/gpu`` to that claim, never to a device plugin, and the DRA driver signs the grant
at prepare. Node labels and pod status are not a tenant's to write.
"""

from __future__ import annotations

from tessera import RESOURCE_GPU
from tessera.podrequest import KIND_GPU, PodRequest
from tessera.quantity import QuantityError, parse_quantity

LABEL_DRA_DRIVER = "tessera.io/dra-driver"


def dra_node(node: dict) -> bool:
    """Whether kube-scheduler serves ``nvidia.com/gpu`` on this Node (API JSON) through Tessera's DRA
    driver: labelled for the driver, and no device-plugin ``nvidia.com/gpu`` in its allocatable."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_DRA_DRIVER) != "true":
        return False
    advertised = ((node.get("status") or {}).get("allocatable") or {}).get(RESOURCE_GPU)
    if advertised is None:
        return True
    try:
        return parse_quantity(advertised) == 0
    except QuantityError:
        return False   # unreadable: not known to be 0, so the device plugin's path decides


def dra_request(request: PodRequest) -> bool:
    """Whether every Tessera ask of the pod is whole GPUs (``nvidia.com/gpu``), the one resource mapped."""
    return bool(request.asks) and all(a.kind == KIND_GPU for a in request.asks)


def claim_status_problem(pod: dict, request: PodRequest) -> str | None:
    """None when ``pod.status.extendedResourceClaimStatus`` names a claim and maps ``nvidia.com/gpu`` of
    every container that asks for it (what kube-scheduler writes before it binds), else what is missing."""
    status = (pod.get("status") or {}).get("extendedResourceClaimStatus") or {}
    if not isinstance(status, dict) or not status.get("resourceClaimName"):
        return "kube-scheduler allocated no ResourceClaim for its nvidia.com/gpu (pod.status.extendedResourceClaimStatus)"
    mapped = {m.get("containerName") for m in status.get("requestMappings") or []
              if isinstance(m, dict) and m.get("resourceName") == RESOURCE_GPU}
    missing = [c.name for c in request.containers if c.ask is not None and c.name not in mapped]
    if missing:
        return f"pod.status.extendedResourceClaimStatus maps no nvidia.com/gpu of container(s) {', '.join(missing)}"
    return None


def pass_dra_nodes(dra_nodes: set[str], names: list[str], fits: list[str], failed: dict[str, str],
                   unresolvable: dict[str, str]) -> list[str] | None:
    """``fits`` with the nodes of ``dra_nodes`` that failed added back, in the order of ``names`` (and taken
    out of ``failed`` and ``unresolvable``): there kube-scheduler's DRA allocator, which ran before the
    extender, serves the pod's ``nvidia.com/gpu`` (``extender.dranodes``). None when there is none."""
    passed = dra_nodes.intersection(failed)
    passed.update(dra_nodes.intersection(unresolvable))
    if not passed:
        return None
    for name in passed:
        failed.pop(name, None)
        unresolvable.pop(name, None)
    passed.update(fits)
    return list(filter(passed.__contains__, names))
