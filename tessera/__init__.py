"""Tessera: share NVIDIA GPUs in Kubernetes.

The shared core: the daemons (``deviceplugin``, ``extender``, ``hook``, ``exporter``), the embedded
cluster and the ``tessera`` command import it, and it imports none of them. This file holds the
contracts between the parts (resource names, annotation and label keys, GPU modes, Tessera's own
identities); import those from ``tessera``. Everything else is imported from its module, one job each
and nothing re-exported here (so that the hook, which runs at every container start, loads only what it
uses): the documents that cross a process boundary (:mod:`~tessera.assignment`, :mod:`~tessera.grant`,
:mod:`~tessera.inventory`, :mod:`~tessera.quantity`), the Kubernetes wire (:mod:`~tessera.kube`,
:mod:`~tessera.follow`), GPUs through NVML (:mod:`~tessera.nvml`, :mod:`~tessera.gpu`, :mod:`~tessera.gpm`,
:mod:`~tessera.topology`, :mod:`~tessera.migcaps`, :mod:`~tessera.fakenvml`), the kubelet's gRPC
(:mod:`~tessera.kubeletapi`), serving and running (:mod:`~tessera.httpserve`, :mod:`~tessera.pki`,
:mod:`~tessera.config`, :mod:`~tessera.cli_parsers`, :mod:`~tessera.log`, :mod:`~tessera.backoff`,
:mod:`~tessera.periodic`, :mod:`~tessera.daemonproc`), and small shared tools (:mod:`~tessera.table`,
:mod:`~tessera.yamlfile`, :mod:`~tessera.slowclients`, :mod:`~tessera.exports`,
:mod:`~tessera.newest`).
"""

__version__ = "0.1.0"

# Resource names and annotation keys: contracts between the parts (see ARCHITECTURE.md).
RESOURCE_GPU = "nvidia.com/gpu"
RESOURCE_MPS_CORE = "nvidia.com/mps-core"
RESOURCE_MPS_MEMORY = "nvidia.com/mps-memory"
RESOURCE_GPU_SHARED = "nvidia.com/gpu.shared"
RESOURCE_MIG_PREFIX = "nvidia.com/mig-"

RESOURCE_PREFIX = "nvidia.com/"          # every resource name above begins so
ANNOTATION_PREFIX = "tessera.io/"        # every annotation and label key below begins so

ANNOTATION_INVENTORY = "tessera.io/gpu-inventory"
ANNOTATION_ASSIGNMENT = "tessera.io/assignment"
ANNOTATION_ALLOCATED = "tessera.io/allocated"
ANNOTATION_POLICY = "tessera.io/policy"
LABEL_GPU_MODE = "tessera.io/gpu-mode"

GPU_MODES = ("exclusive", "mig", "mps", "timeslice")

# Tessera's own identities, as deploy/ names them: the namespace and the ServiceAccounts of the parts that
# write tessera.io/* annotations on pods (the device plugin its ledger, the extender through the Binding).
NAMESPACE = "tessera-system"
SERVICE_ACCOUNT_DEVICE_PLUGIN = "tessera-device-plugin"
SERVICE_ACCOUNT_EXTENDER = "tessera-extender"


def service_account_username(namespace: str, name: str) -> str:
    """The user name the API server gives a ServiceAccount's token: ``system:serviceaccount:<ns>:<name>``."""
    return f"system:serviceaccount:{namespace}:{name}"


def mig_resource_name(profile: str) -> str:
    """The extended resource for a MIG profile: ``1g.10gb`` -> ``nvidia.com/mig-1g.10gb``.

    A ``+`` in a profile name (``1g.10gb+me``) is written as ``.`` since resource names cannot hold it.
    """
    return RESOURCE_MIG_PREFIX + profile.replace("+", ".")


__all__ = [
    "ANNOTATION_ALLOCATED", "ANNOTATION_ASSIGNMENT", "ANNOTATION_INVENTORY", "ANNOTATION_POLICY", "ANNOTATION_PREFIX",
    "GPU_MODES", "LABEL_GPU_MODE", "NAMESPACE", "RESOURCE_GPU", "RESOURCE_GPU_SHARED", "RESOURCE_MIG_PREFIX",
    "RESOURCE_MPS_CORE", "RESOURCE_MPS_MEMORY", "RESOURCE_PREFIX", "SERVICE_ACCOUNT_DEVICE_PLUGIN",
    "SERVICE_ACCOUNT_EXTENDER", "mig_resource_name", "service_account_username",
]
