"""Regenerate ``openapi_definitions.json``: the OpenAPI v2 schemas of the kinds this server serves.

Run from the repository root (the tests extra installs the source)::

    python -m simcluster.apiserver.openapi_generate

The source is the Kubernetes JSON schemas that ``kubernetes-validate`` bundles for the version the
server reports (``discovery.KUBE_VERSION``). They are Kubernetes' own OpenAPI definitions turned into
JSON Schema; this undoes that turn (``"type": ["string", "null"]`` back to ``"string"``, refs back to
``#/definitions/``, the ``apiVersion``/``kind`` enums it adds dropped, ``Quantity`` and
``IntOrString`` back to their OpenAPI form) and keeps only what the served kinds reach. Descriptions
are left out to keep the file small. A test regenerates it and compares, so the committed file is
what this script writes.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .discovery import KUBE_VERSION
from .openapi import closure
from .resources import RESOURCES

OUTPUT = Path(__file__).with_name("openapi_definitions.json")
# Kinds served as subresource bodies or answers, beside the resources and their lists.
EXTRA_KINDS: tuple[tuple[str, str, str], ...] = (
    ("", "v1", "Binding"), ("policy", "v1", "Eviction"), ("", "v1", "Status"),
)
_REF_PREFIX = "#/$defs/"
# Types whose JSON Schema form is a oneOf of primitives; Kubernetes' OpenAPI has them as strings.
_PRIMITIVE_UNIONS = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
}


def source_definitions() -> dict[str, Any]:
    """The bundled JSON Schema definitions for ``KUBE_VERSION`` (needs ``kubernetes-validate``)."""
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"{KUBE_VERSION[2]}-local"
    return json.loads((folder / "_definitions.json").read_text())["$defs"]


def served_kinds() -> set[tuple[str, str, str]]:
    """(group, version, kind) of every kind whose schema is served: resources, lists, extras."""
    kinds = set(EXTRA_KINDS)
    for info in RESOURCES:
        kinds.update({(info.group, info.version, info.kind), (info.group, info.version, info.list_kind)})
    return kinds


def _to_openapi(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_to_openapi(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("description", "enum"):
            continue
        if key == "$ref":
            out[key] = "#/definitions/" + value.removeprefix(_REF_PREFIX)
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out[key] = {name: _to_openapi(sub) for name, sub in value.items()}
        else:
            out[key] = _to_openapi(value)
    return out


def build(source: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI v2 ``definitions`` for the served kinds and everything they reach, by name."""
    names = closure(source, served_kinds())
    return {name: _PRIMITIVE_UNIONS.get(name) or _to_openapi(source[name]) for name in sorted(names)}


def render(definitions: dict[str, Any]) -> str:
    """The file's text: one definition per line, keys sorted, so a change reads as a small diff."""
    lines = [f"{json.dumps(name)}: {json.dumps(schema, sort_keys=True, separators=(',', ':'))}"
             for name, schema in definitions.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main() -> int:
    """Rewrite ``openapi_definitions.json`` from the installed ``kubernetes-validate``."""
    OUTPUT.write_text(render(build(source_definitions())))
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
