"""Kubernetes authorization, as far as these tests need it: a recorded API request turned into the
attributes RBAC decides on (verb, API group, resource[/subresource], namespace, name), and the rules
deploy/ grants a ServiceAccount through its RoleBindings and ClusterRoleBindings."""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.apiserver.recording import ApiRequest

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Attributes:
    """What the API server's authorizer is asked about one request."""

    verb: str
    group: str
    resource: str  # "pods", "pods/binding"
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource}{'/' + self.name if self.name else ''}{where}"


def attributes(request: ApiRequest) -> Attributes | None:
    """The request's attributes as Kubernetes' RequestInfo makes them; None for a non-resource URL."""
    parts = [p for p in request.path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None  # discovery, /version, /healthz: open to every authenticated user
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if request.method == "GET":
        watch = legacy_watch or request.query.get("watch", "").lower() in ("1", "true")
        verb = "watch" if watch else "get" if name else "list"
        selector = request.query.get("fieldSelector", "")
        if not name and selector.startswith("metadata.name=") and "," not in selector:
            name = selector.removeprefix("metadata.name=")  # RBAC resourceNames apply to such a list/watch
    elif request.method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _METHOD_VERBS[request.method]
    return Attributes(verb, group, resource, namespace, name)


@dataclass(frozen=True)
class Grant:
    """One verb of one rule, where it applies ("" namespace: cluster-wide)."""

    verb: str
    group: str
    resource: str
    names: tuple[str, ...]
    namespace: str

    def allows(self, a: Attributes) -> bool:
        return (self.verb in (a.verb, "*") and self.group in (a.group, "*") and self.resource in (a.resource, "*")
                and (not self.names or a.name in self.names) and (not self.namespace or self.namespace == a.namespace))


def grants(objects: list[dict], service_account: str, namespace: str) -> list[Grant]:
    """Every verb the rendered objects grant the ServiceAccount (roles defined in deploy/ only)."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o.get("rules", [])
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    found = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account and s.get("namespace") == namespace
                   for s in binding.get("subjects", [])):
            continue
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        ref = binding["roleRef"]
        rules = roles[(ref["kind"], scope if ref["kind"] == "Role" else "", ref["name"])]
        for rule in rules:
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        found.append(Grant(verb, group, resource, tuple(rule.get("resourceNames", ())), scope))
    return found
