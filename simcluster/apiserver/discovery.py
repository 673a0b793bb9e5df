"""Discovery documents: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``.

Only the legacy (unaggregated) form is served: kubectl asks for the aggregated
``apidiscovery.k8s.io/v2`` list first and falls back when the answer is plain ``application/json``.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

from .resources import RESOURCES, SUBRESOURCE_DISCOVERY, group_versions

KUBE_VERSION = ("1", "32", "v1.32.0")


def version_info() -> dict[str, Any]:
    """The ``/version`` document."""
    major, minor, git = KUBE_VERSION
    return {
        "major": major, "minor": minor, "gitVersion": f"{git}+tessera-simcluster",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
        "platform": f"linux/{'amd64' if platform.machine() in ('x86_64', 'AMD64') else platform.machine()}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    """``/apis``: every named group."""
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    """``/apis/<group>``, or None for a group not served."""
    versions = group_versions().get(group)
    if not group or versions is None:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def _hash(text: str) -> str:
    return __import__("base64").b64encode(hashlib.sha256(text.encode()).digest()[:8]).decode()


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>``: the resources and subresources served there."""
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for r in served:
        entry: dict[str, Any] = {
            "name": r.name, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = _hash(f"{r.group}/{r.version}/{r.kind}")
        resources.append(entry)
        for sub in r.subresources:
            spec = SUBRESOURCE_DISCOVERY[(r.name, sub)]
            sub_entry: dict[str, Any] = {"name": f"{r.name}/{sub}", "singularName": "", "namespaced": r.namespaced}
            if "group" in spec:
                sub_entry["group"], sub_entry["version"] = spec["group"], spec["version"]
            sub_entry["kind"], sub_entry["verbs"] = spec["kind"], spec["verbs"]
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
