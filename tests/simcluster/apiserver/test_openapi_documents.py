"""/openapi/v2 and /openapi/v3 describe every served kind in the forms kubectl reads: v2 as gnostic
protobuf with resolvable refs and the patch-strategy extensions ``kubectl apply`` computes with,
v3 as an index of per-group-version JSON documents."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import yaml

from simcluster.apiserver.openapi import referenced
from simcluster.apiserver.protos.openapiv2 import OpenAPIv2_pb2 as pb
from simcluster.apiserver.resources import RESOURCES

PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _get(server, path: str, accept: str) -> tuple[int, str, bytes]:
    req = urllib.request.Request(server.url + path, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _extensions(schema: pb.Schema) -> dict:
    return {ext.name: yaml.safe_load(ext.value.yaml) for ext in schema.vendor_extension}


def _refs(schema: pb.Schema) -> set[str]:
    out = {schema._ref} if schema._ref else set()  # noqa: SLF001 - gnostic's field name
    children = [p.value for p in schema.properties.additional_properties] + list(schema.items.schema)
    children += list(schema.all_of)
    if schema.additional_properties.HasField("schema"):
        children.append(schema.additional_properties.schema)
    for child in children:
        out |= _refs(child)
    return out


def test_v2_in_protobuf_describes_every_served_kind_as_kubectl_parses_it(server):
    code, ctype, body = _get(server, "/openapi/v2", PROTOBUF)
    # Go's mime parser refuses '@' in a Content-Type: the answer spells the type with a dot.
    assert code == 200 and ctype == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    doc = pb.Document.FromString(body)
    assert doc.swagger == "2.0" and doc.info.version == "v1.32.0"
    definitions = {d.name: d.value for d in doc.definitions.additional_properties}
    kinds = {(g["group"], g["version"], g["kind"]) for schema in definitions.values()
             for g in _extensions(schema).get("x-kubernetes-group-version-kind", [])}
    for info in RESOURCES:
        assert (info.group, info.version, info.kind) in kinds and (info.group, info.version, info.list_kind) in kinds
    for name, schema in definitions.items():
        for ref in _refs(schema):
            assert ref.removeprefix("#/definitions/") in definitions, (name, ref)
    containers = next(p.value for p in definitions["io.k8s.api.core.v1.PodSpec"].properties.additional_properties
                      if p.name == "containers")
    assert containers.type.value == ["array"] and len(containers.items.schema) == 1
    assert _extensions(containers)["x-kubernetes-patch-strategy"] == "merge"
    assert _extensions(containers)["x-kubernetes-patch-merge-key"] == "name"


def test_v2_as_json_and_an_unservable_accept_header(server):
    code, ctype, body = _get(server, "/openapi/v2", "application/json")
    assert code == 200 and ctype == "application/json"
    assert "io.k8s.api.core.v1.ResourceQuota" in json.loads(body)["definitions"]
    code, _, body = _get(server, "/openapi/v2", "application/xml")
    assert code == 406 and json.loads(body)["reason"] == "NotAcceptable"


def test_v3_index_points_at_a_document_per_group_version(server):
    code, _, body = _get(server, "/openapi/v3", "application/json")
    paths = json.loads(body)["paths"]
    assert set(paths) == {f"apis/{r.group}/{r.version}" if r.group else "api/v1" for r in RESOURCES}
    for path, entry in paths.items():
        code, ctype, raw = _get(server, entry["serverRelativeURL"], "application/json")
        assert code == 200 and ctype == "application/json", path
        doc = json.loads(raw)
        schemas = doc["components"]["schemas"]
        assert all(ref.rsplit("/", 1)[-1] in schemas for s in schemas.values() for ref in referenced(s)), path
        for operations in doc["paths"].values():
            assert set(operations) == {"get", "parameters"}  # reads only: no PATCH, no fieldValidation claim
    assert _get(server, "/openapi/v3/apis/apps/v1", "application/json")[0] == 404
