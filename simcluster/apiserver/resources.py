"""The kinds this API server serves: group, version, names, scope, verbs and field selectors.

Everything that differs between kinds as data (not code) lives here, so the HTTP layer,
discovery and the store read one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# Field selectors every kind supports (the generic registry's DefaultClusterScopedAttr /
# DefaultNamespaceScopedAttr).
_META_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource, e.g. core/v1 ``pods``."""

    group: str
    version: str
    name: str  # plural, as in the URL
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Field selectors beyond metadata.name/metadata.namespace (dotted paths into the object).
    field_labels: tuple[str, ...] = ()
    # Fields with a status subresource: the main resource cannot write status, and vice versa.
    has_status: bool = False
    # Field values the store keeps an index for (fast `fieldSelector=spec.nodeName=x`).
    indexed_fields: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # A field other than metadata whose change bumps metadata.generation.
    spec_field: str | None = "spec"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        """``v1`` or ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """``PodList`` etc."""
        return self.kind + "List"

    def selectable_fields(self) -> tuple[str, ...]:
        """Every field selector this kind accepts."""
        return _META_FIELDS + self.field_labels


PODS = ResourceInfo(
    "", "v1", "pods", "pod", "Pod", True,
    short_names=("po",), categories=("all",),
    subresources=("status", "binding", "eviction", "log"),
    field_labels=(
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName",
    ),
    has_status=True,
    indexed_fields=("spec.nodeName",),
)
NODES = ResourceInfo(
    "", "v1", "nodes", "node", "Node", False,
    short_names=("no",), subresources=("status",), field_labels=("spec.unschedulable",), has_status=True,
)
NAMESPACES = ResourceInfo(
    "", "v1", "namespaces", "namespace", "Namespace", False,
    short_names=("ns",), subresources=("status",), field_labels=("status.phase",), has_status=True,
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
EVENTS = ResourceInfo(
    "", "v1", "events", "event", "Event", True,
    short_names=("ev",),
    field_labels=(
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type",
    ),
    spec_field=None,
)
CONFIGMAPS = ResourceInfo("", "v1", "configmaps", "configmap", "ConfigMap", True, short_names=("cm",), spec_field=None)
SECRETS = ResourceInfo("", "v1", "secrets", "secret", "Secret", True, field_labels=("type",), spec_field=None)
RESOURCE_QUOTAS = ResourceInfo(
    "", "v1", "resourcequotas", "resourcequota", "ResourceQuota", True,
    short_names=("quota",), subresources=("status",), has_status=True,
)
LEASES = ResourceInfo("coordination.k8s.io", "v1", "leases", "lease", "Lease", True)
MUTATING_WEBHOOKS = ResourceInfo(
    "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration",
    "MutatingWebhookConfiguration", False, categories=("api-extensions",), spec_field="webhooks",
)
VALIDATING_WEBHOOKS = ResourceInfo(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "validatingwebhookconfiguration",
    "ValidatingWebhookConfiguration", False, categories=("api-extensions",), spec_field="webhooks",
)

RESOURCES: tuple[ResourceInfo, ...] = (
    PODS, NODES, NAMESPACES, EVENTS, CONFIGMAPS, SECRETS, RESOURCE_QUOTAS, LEASES, MUTATING_WEBHOOKS,
    VALIDATING_WEBHOOKS,
)

# Subresource kinds and verbs, for discovery.
SUBRESOURCE_DISCOVERY = {
    ("pods", "status"): {"kind": "Pod", "verbs": ["get", "patch", "update"]},
    ("pods", "binding"): {"kind": "Binding", "verbs": ["create"]},
    ("pods", "eviction"): {"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
    ("pods", "log"): {"kind": "Pod", "verbs": ["get"]},
    ("nodes", "status"): {"kind": "Node", "verbs": ["get", "patch", "update"]},
    ("namespaces", "status"): {"kind": "Namespace", "verbs": ["get", "patch", "update"]},
    ("resourcequotas", "status"): {"kind": "ResourceQuota", "verbs": ["get", "patch", "update"]},
}

_BY_PATH = {(r.group, r.version, r.name): r for r in RESOURCES}
_BY_NAME = {r.name: r for r in RESOURCES}


def lookup(group: str, version: str, name: str) -> ResourceInfo | None:
    """The resource served at ``/api[s]/<group>/<version>/<name>``, or None."""
    return _BY_PATH.get((group, version, name))


def by_name(name: str) -> ResourceInfo:
    """The resource with this plural name (``pods``); KeyError if none."""
    return _BY_NAME[name]


def group_versions() -> dict[str, list[str]]:
    """Each named group and its versions (the core group "" included)."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
