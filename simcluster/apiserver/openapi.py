"""``/openapi/v2`` and ``/openapi/v3``: the schemas of the kinds this server serves, for kubectl.

kubectl downloads ``/openapi/v2`` (as gnostic protobuf) before ``apply`` and ``create -f`` to
validate the manifest, and reads the ``x-kubernetes-patch-*`` extensions there to compute ``apply``
patches; ``kubectl explain`` reads ``/openapi/v3``. The schemas are Kubernetes' own, for the
version ``/version`` reports (``openapi_definitions.json``, written by ``openapi_generate``).

Operations: the v3 documents list each resource's reads (``get`` on the object and list paths,
which ``kubectl explain`` looks up the kind by); no document lists a PATCH. From a PATCH
operation's parameters kubectl learns whether the server validates fields itself
(``fieldValidation``); this one does not, so kubectl validates the manifest against the schema
before sending it, as it does with servers older than 1.25, and refuses an unknown or mistyped
field with the real message. Without a PATCH operation, ``kubectl apply`` computes its patch from
the v2 definitions' ``x-kubernetes-patch-*`` extensions.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from . import errors
from .discovery import KUBE_VERSION
from .openapi_proto import encode_document
from .resources import RESOURCES, ResourceInfo

DEFINITIONS_FILE = Path(__file__).with_name("openapi_definitions.json")
# What client-go asks for, and what kube-openapi answers with (an '@' is not allowed in a
# Content-Type: Go's mime.ParseMediaType refuses it, so the answer spells it with a dot).
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF_ANSWER = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_INFO = {"title": "Kubernetes", "version": KUBE_VERSION[2]}


@cache
def definitions() -> dict[str, Any]:
    """The OpenAPI v2 definitions of the served kinds, by name (read once)."""
    return json.loads(DEFINITIONS_FILE.read_text())


@cache
def v2_json() -> bytes:
    """``/openapi/v2`` as JSON."""
    return orjson.dumps({"swagger": "2.0", "info": _INFO, "paths": {}, "definitions": definitions()})


@cache
def v2_protobuf() -> bytes:
    """``/openapi/v2`` as the gnostic ``openapi.v2.Document`` protobuf kubectl asks for."""
    return encode_document({"swagger": "2.0", "info": _INFO, "paths": {}, "definitions": definitions()})


def _media_type(accept: str | None, served: tuple[str, ...]) -> str:
    """The first Accept entry this endpoint answers in (JSON for ``*/*``, as kube-openapi does);
    406 when there is none."""
    for entry in (accept or "*/*").split(","):
        media = entry.split(";")[0].strip().lower()
        if media in ("*/*", "application/*"):
            return "application/json"
        if media in served:
            return media
    raise errors.not_acceptable(list(served))


def answer(path: str, accept: str | None) -> tuple[bytes, str]:
    """The body and content type for ``/openapi/<path>``: ``v2``, ``v3`` or ``v3/<group-version>``
    (a ``hash`` query is ignored: the server has one version of each document); 404 otherwise."""
    if path == "v2":
        media = _media_type(accept, ("application/json", V2_PROTOBUF, V2_PROTOBUF_ANSWER))
        if media == "application/json":
            return v2_json(), media
        return v2_protobuf(), V2_PROTOBUF_ANSWER
    if path == "v3" or path.startswith("v3/"):
        doc = v3_index() if path == "v3" else v3_documents().get(path[3:])
        if doc is not None:
            return doc, _media_type(accept, ("application/json",))
    raise errors.path_not_found()


def referenced(schema: Any) -> set[str]:
    """The definition names a schema refers to (``$ref``), at any depth, whatever the ref's prefix."""
    if isinstance(schema, dict):
        out: set[str] = set()
        for key, value in schema.items():
            out |= {value.rsplit("/", 1)[-1]} if key == "$ref" else referenced(value)
        return out
    if isinstance(schema, list):
        return set().union(*(referenced(v) for v in schema))
    return set()


def closure(defs: dict[str, Any], kinds: set[tuple[str, str, str]]) -> set[str]:
    """The names of the definitions of ``kinds`` (group, version, kind) and of all they refer to."""
    stack = [name for name, schema in defs.items()
             if any((g["group"], g["version"], g["kind"]) in kinds
                    for g in schema.get("x-kubernetes-group-version-kind") or [])]
    names: set[str] = set()
    while stack:
        name = stack.pop()
        if name not in names:
            names.add(name)
            stack.extend(referenced(defs[name]) - names)
    return names


def _group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _v3_schema(schema: Any) -> Any:
    """A v2 schema in v3 form: refs into ``components/schemas``; a ref with siblings wrapped in
    ``allOf`` (v3 ignores a ``$ref``'s siblings), as the real server writes it."""
    if isinstance(schema, list):
        return [_v3_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _v3_schema(v) for k, v in schema.items() if k != "$ref"}
    if "$ref" in schema:
        ref = {"$ref": schema["$ref"].replace("#/definitions/", "#/components/schemas/")}
        if not out:
            return ref
        out["allOf"] = [ref]
    return out


def _read(info: ResourceInfo, kind: str, action: str) -> dict[str, Any]:
    ref = next(n for n, d in definitions().items()
               if {"group": info.group, "version": info.version, "kind": kind} in d.get("x-kubernetes-group-version-kind", []))
    return {
        "operationId": f"{action}{info.kind}", "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": kind},
        "responses": {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}},
    }


def _path_params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}
            for n in names]


def _read_paths(group: str, version: str) -> dict[str, Any]:
    """The get and list operations of the group-version's resources, by path."""
    paths: dict[str, Any] = {}
    for info in RESOURCES:
        if (info.group, info.version) != (group, version):
            continue
        base = "/" + _group_version_path(group, version)
        scope = ("namespace",) if info.namespaced else ()
        collection = f"{base}/namespaces/{{namespace}}/{info.name}" if info.namespaced else f"{base}/{info.name}"
        paths[collection] = {"get": _read(info, info.list_kind, "list"), "parameters": _path_params(*scope)}
        paths[collection + "/{name}"] = {"get": _read(info, info.kind, "get"),
                                         "parameters": _path_params("name", *scope)}
    return paths


def _kinds_of(group: str, version: str) -> set[tuple[str, str, str]]:
    kinds = set()
    for info in RESOURCES:
        if (info.group, info.version) == (group, version):
            kinds |= {(group, version, info.kind), (group, version, info.list_kind)}
    return kinds


@cache
def v3_documents() -> dict[str, bytes]:
    """Each served group-version's ``/openapi/v3/<api|apis/group>/<version>`` document, as JSON by
    path: the schemas of its kinds and of everything they refer to."""
    defs = definitions()
    docs: dict[str, bytes] = {}
    for group, version in sorted({(r.group, r.version) for r in RESOURCES}):
        names = closure(defs, _kinds_of(group, version))
        doc = {"openapi": "3.0.0", "info": _INFO, "paths": _read_paths(group, version),
               "components": {"schemas": {n: _v3_schema(defs[n]) for n in sorted(names)}}}
        docs[_group_version_path(group, version)] = orjson.dumps(doc)
    return docs


@cache
def v3_index() -> bytes:
    """``/openapi/v3``: where each group-version's document is, with a content hash for caches."""
    paths = {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={hashlib.sha512(doc).hexdigest().upper()}"}
             for path, doc in v3_documents().items()}
    return orjson.dumps({"paths": paths})
