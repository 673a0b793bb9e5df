"""Which Node labels Tessera owns: it changes and removes only labels it wrote itself.

The Node annotation ``tessera.io/owned-labels`` records each label Tessera wrote with the value it
wrote (JSON ``{key: value}``). A label is Tessera's while the Node still carries the value recorded:
a label another writer put there first (GPU Feature Discovery, an admin) is never written over, and
one another writer changed since is given up, left as it is and no longer recorded. Removal
(:func:`removal_patch`: a label Tessera stops deciding, or uninstall) takes only Tessera's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from deviceplugin.apiclient import NodeApi
from tessera import ANNOTATION_INVENTORY, ANNOTATION_PREFIX

ANNOTATION_OWNED_LABELS = f"{ANNOTATION_PREFIX}owned-labels"
# What Tessera wrote before it kept the record: adopted on upgrade where they hold Tessera's value now.
EARLIER_LABELS = ("nvidia.com/gpu.product", "nvidia.com/gpu.count", "nvidia.com/gpu.memory")


@dataclass(frozen=True)
class LabelPlan:
    """One Node patch: the labels to set (None removes), the new ownership record, and what was left alone."""

    labels: dict[str, str | None]
    owned: dict[str, str]
    foreign: list[str] = field(default_factory=list)  # wanted, but another writer's
    released: list[str] = field(default_factory=list)  # ours once, changed by another writer since

    @property
    def annotation(self) -> str | None:
        """The ``tessera.io/owned-labels`` value to write (None removes the annotation)."""
        return json.dumps(self.owned, separators=(",", ":"), sort_keys=True) if self.owned else None


def node_labels(node: dict | None) -> dict[str, str]:
    """The Node's labels ({} without a Node)."""
    return dict(((node or {}).get("metadata") or {}).get("labels") or {})


def owned_labels(node: dict | None, desired: dict[str, str] | None = None) -> dict[str, str]:
    """The labels the Node's record says Tessera wrote, with their values ({} when none or unreadable).

    A Node with Tessera's inventory but no record was labelled by a Tessera from before the record:
    of ``desired``, the labels it wrote (EARLIER_LABELS) that still hold the value are taken as its own.
    """
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(ANNOTATION_OWNED_LABELS)
    if text is None and ANNOTATION_INVENTORY in annotations and desired:
        current = node_labels(node)
        return {k: desired[k] for k in EARLIER_LABELS if k in desired and current.get(k) == desired[k]}
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}


def _ours(current: dict[str, str], owned: dict[str, str], key: str) -> bool:
    """Whether ``key`` is Tessera's on this Node: recorded, and absent or still at the recorded value."""
    return key in owned and current.get(key, owned[key]) == owned[key]


def label_plan(current: dict[str, str], owned: dict[str, str], desired: dict[str, str]) -> LabelPlan:
    """The patch that brings Tessera's labels to ``desired`` without touching anyone else's.

    ``current``: the Node's labels now; ``owned``: its ownership record. Only labels that change are
    in the patch, so a Node already right gets an empty one.
    """
    labels: dict[str, str | None] = {}
    new_owned: dict[str, str] = {}
    foreign = [k for k in sorted(desired) if k in current and k not in owned]
    released = [k for k in sorted(owned) if not _ours(current, owned, k)]
    for key, value in desired.items():
        if key in foreign or key in released:
            continue
        new_owned[key] = value
        if current.get(key) != value:
            labels[key] = value
    for key in owned:
        if key not in desired and _ours(current, owned, key) and key in current:
            labels[key] = None
    return LabelPlan(labels, new_owned, foreign, released)


def removal_patch(node: dict | None) -> dict[str, None]:
    """The labels to remove so that none Tessera wrote stays (uninstall): only those still at its value."""
    current, owned = node_labels(node), owned_labels(node)
    return {k: None for k in sorted(owned) if k in current and _ours(current, owned, k)}


def remove_owned(api: NodeApi) -> list[str]:
    """Remove from ``api``'s Node every label Tessera wrote and still holds, and the record itself.

    Returns the keys removed. Labels another writer put there or changed since stay.
    """
    node = api.get_node()
    if node is None:
        return []
    labels = removal_patch(node)
    if labels or ANNOTATION_OWNED_LABELS in ((node.get("metadata") or {}).get("annotations") or {}):
        api.patch_node_metadata(labels, {ANNOTATION_OWNED_LABELS: None})
    return sorted(labels)
