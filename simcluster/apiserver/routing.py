"""URL paths to what they name: discovery documents or a resource (namespace, name, subresource)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import path_not_found
from .resources import PODS, ResourceInfo, lookup


@dataclass(frozen=True)
class Route:
    """What a request path names."""

    kind: str  # root, version, health, api, apis, group, resources, object, bindings, openapi
    group: str = ""
    version: str = ""
    info: ResourceInfo | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""
    legacy_watch: bool = False


def route(path: str) -> Route:
    """Parse ``path`` (without query); raise 404 ``ApiError`` for anything not served."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Route("root")
    head = parts[0]
    if head == "version" and len(parts) == 1:
        return Route("version")
    if head in ("healthz", "livez", "readyz"):
        return Route("health")
    if head == "openapi":
        return Route("openapi", name="/".join(parts[1:]))
    if head == "api":
        if len(parts) == 1:
            return Route("api")
        if parts[1] != "v1":
            raise path_not_found()
        return _resource_route("", "v1", parts[2:])
    if head == "apis":
        if len(parts) == 1:
            return Route("apis")
        if len(parts) == 2:
            return Route("group", group=parts[1])
        return _resource_route(parts[1], parts[2], parts[3:])
    raise path_not_found()


def _resource_route(group: str, version: str, rest: list[str]) -> Route:
    if not rest:
        return Route("resources", group, version)
    legacy = rest[0] == "watch"
    if legacy:
        rest = rest[1:]
        if not rest:
            raise path_not_found()
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and (lookup(group, version, rest[2]) or rest[2] == "bindings"):
        namespace, rest = rest[1], rest[2:]
        if rest[0] == "bindings" and group == "" and not legacy:
            if len(rest) != 1:
                raise path_not_found()
            return Route("bindings", group, version, PODS, namespace)
    info = lookup(group, version, rest[0])
    if info is None or len(rest) > 3:
        raise path_not_found()
    if namespace is not None and not info.namespaced:
        raise path_not_found()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in info.subresources:
        raise path_not_found()
    if info.namespaced and namespace is None and name is not None:
        raise path_not_found()
    if legacy and sub:
        raise path_not_found()
    return Route("object", group, version, info, namespace, name, sub, legacy)
