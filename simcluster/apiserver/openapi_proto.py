"""An OpenAPI v2 document (as JSON) in gnostic's protobuf form, which kubectl downloads.

client-go asks ``/openapi/v2`` for ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``
and unmarshals the answer as ``openapi.v2.Document`` whatever its content type, so JSON will not
do. This converts the parts a schema document uses (info, definitions; schemas with refs, types,
formats, items, properties, additionalProperties, required, allOf and ``x-`` extensions, which
gnostic carries as YAML text); anything else is a ``ValueError``, so a new keyword in the
definitions is noticed when the document is built rather than silently dropped.
"""

from __future__ import annotations

from typing import Any

import yaml

from .protos.openapiv2 import OpenAPIv2_pb2 as pb

# JSON Schema keywords copied into a same-named scalar field of ``openapi.v2.Schema``.
_SCALARS = {"format": "format", "title": "title", "description": "description", "pattern": "pattern",
            "discriminator": "discriminator", "readOnly": "read_only", "maximum": "maximum",
            "minimum": "minimum", "maxLength": "max_length", "minLength": "min_length",
            "maxItems": "max_items", "minItems": "min_items", "uniqueItems": "unique_items"}


def _any(value: Any) -> pb.Any:
    """A value as gnostic's ``Any``: YAML text (what kube-openapi parses back)."""
    return pb.Any(yaml=yaml.safe_dump(value, default_flow_style=False, sort_keys=False))


def _extensions(doc: dict[str, Any]) -> list[pb.NamedAny]:
    return [pb.NamedAny(name=key, value=_any(value)) for key, value in doc.items() if key.startswith("x-")]


def encode_schema(schema: dict[str, Any]) -> pb.Schema:
    """One JSON schema object as ``openapi.v2.Schema``; ``ValueError`` for a keyword it cannot carry."""
    out = pb.Schema()
    for key, value in schema.items():
        if key.startswith("x-"):
            continue
        if key == "$ref":
            out._ref = value  # noqa: SLF001 - gnostic's field name
        elif key in _SCALARS:
            setattr(out, _SCALARS[key], value)
        elif key == "type":
            out.type.value.extend([value] if isinstance(value, str) else value)
        elif key == "required":
            out.required.extend(value)
        elif key == "enum":
            out.enum.extend(_any(v) for v in value)
        elif key == "default":
            out.default.CopyFrom(_any(value))
        elif key == "items":
            items = value if isinstance(value, list) else [value]
            out.items.schema.extend(encode_schema(s) for s in items)
        elif key == "allOf":
            out.all_of.extend(encode_schema(s) for s in value)
        elif key == "properties":
            out.properties.additional_properties.extend(
                pb.NamedSchema(name=name, value=encode_schema(sub)) for name, sub in value.items())
        elif key == "additionalProperties":
            if isinstance(value, bool):
                out.additional_properties.boolean = value
            else:
                out.additional_properties.schema.CopyFrom(encode_schema(value))
        else:
            raise ValueError(f"openapi v2 schema keyword {key!r} has no protobuf encoding here")
    out.vendor_extension.extend(_extensions(schema))
    return out


def encode_document(doc: dict[str, Any]) -> bytes:
    """A swagger 2.0 document (``swagger``, ``info``, empty ``paths``, ``definitions``) as bytes."""
    unknown = set(doc) - {"swagger", "info", "paths", "definitions"}
    if unknown or doc.get("paths"):
        raise ValueError(f"openapi v2 document fields without a protobuf encoding here: {sorted(unknown) or ['paths']}")
    out = pb.Document(swagger=doc["swagger"])
    out.info.title = doc["info"]["title"]
    out.info.version = doc["info"]["version"]
    out.paths.SetInParent()
    out.definitions.additional_properties.extend(
        pb.NamedSchema(name=name, value=encode_schema(schema)) for name, schema in doc["definitions"].items())
    return out.SerializeToString()
