"""Request bodies in ``application/vnd.kubernetes.protobuf``, read into the dicts JSON would give.

client-go's typed clients (since 1.32) send built-in kinds as protobuf, whatever the server
advertises, and fall back to JSON only for CBOR: ``kubectl create namespace|configmap|secret|quota``
and ``kubectl drain``'s evictions arrive as protobuf. The wire format is the magic ``k8s\\x00``, then
a ``runtime.Unknown`` whose ``typeMeta`` names the kind and whose ``raw`` is the object's message.
``PROTOBUF_KINDS`` are the kinds read here (``protos/kubernetes/objects.proto``); a body of
another kind is a 415 naming what this server accepts for it.

Go writes every non-pointer field, empty or not; JSON leaves those out (``omitempty``), so empty
strings, zero numbers, false and empty lists and maps are dropped, and an unset time is null.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from . import errors
from .protos.kubernetes import objects_pb2 as pb

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_TYPES = ("application/json", "application/yaml")
# (apiVersion, kind) -> the message its raw bytes hold.
PROTOBUF_KINDS: dict[tuple[str, str], type[Message]] = {
    ("v1", "Namespace"): pb.Namespace,
    ("v1", "ConfigMap"): pb.ConfigMap,
    ("v1", "Secret"): pb.Secret,
    ("v1", "ResourceQuota"): pb.ResourceQuota,
    ("policy/v1", "Eviction"): pb.Eviction,
    ("v1", "DeleteOptions"): pb.DeleteOptions,
    ("meta.k8s.io/v1", "DeleteOptions"): pb.DeleteOptions,
}
_KINDS = {kind for _, kind in PROTOBUF_KINDS}


def accepted_media_types(kind: str) -> list[str]:
    """The request body types this server reads for ``kind`` (protobuf only where it can)."""
    return [*JSON_TYPES, PROTOBUF] if kind in _KINDS else list(JSON_TYPES)


def decode(body: bytes, kind: str) -> dict[str, Any]:
    """A protobuf body as a dict with ``apiVersion`` and ``kind``; 415 for a kind not read here, 400
    for bytes that are not a Kubernetes protobuf object."""
    if not body.startswith(MAGIC):
        raise errors.bad_request(f"{kind} in protobuf cannot be read: the body does not start with the k8s magic")
    envelope = pb.Unknown()
    try:
        envelope.ParseFromString(body[len(MAGIC):])
    except DecodeError as exc:
        raise errors.bad_request(f"{kind} in protobuf cannot be read: {exc}") from None
    api_version, sent_kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    message_type = PROTOBUF_KINDS.get((api_version, sent_kind))
    if message_type is None:
        raise errors.unsupported_media_type(PROTOBUF, accepted_media_types(sent_kind))
    if envelope.contentEncoding:
        raise errors.bad_request(f"{sent_kind} in protobuf: unsupported contentEncoding {envelope.contentEncoding!r}")
    message = message_type()
    try:
        message.ParseFromString(envelope.raw)
    except DecodeError as exc:
        raise errors.bad_request(f"{sent_kind} in protobuf cannot be read: {exc}") from None
    return {"apiVersion": api_version, "kind": sent_kind, **to_dict(message)}


def to_dict(message: Message) -> dict[str, Any]:
    """A message's set, non-empty fields as JSON values (``Time`` as RFC 3339, ``Quantity`` as its
    string, bytes as base64, as the Go JSON encoder writes them)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            converted: Any = {k: _value(field.message_type.fields_by_name["value"], v) for k, v in value.items()}
        elif field.is_repeated:
            converted = [_value(field, v) for v in value]
        else:
            converted = _value(field, value)
        # A struct is never empty to Go's omitempty; everything else is left out when empty.
        struct = field.message_type is not None and not is_map and not field.is_repeated
        if struct or converted not in ("", 0, [], {}):
            out[field.name] = converted
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.message_type is None:
        return value
    if field.message_type.full_name == pb.Time.DESCRIPTOR.full_name:
        return _rfc3339(value)
    if field.message_type.full_name == pb.Quantity.DESCRIPTOR.full_name:
        return value.string
    return to_dict(value)


def _rfc3339(time: pb.Time) -> str | None:
    if not time.seconds and not time.nanos:
        return None  # Go's zero time, written as null in JSON
    moment = datetime.datetime.fromtimestamp(time.seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
