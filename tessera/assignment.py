"""The pod assignment: annotation ``tessera.io/assignment`` on a Pod, which GPU share each container gets.

The extender writes it before it binds the pod; the node's device plugin reads it in
GetPreferredAllocation to answer the assigned device IDs. The value is a versioned JSON document::

    {"version": 1,
     "node": "gpu-node-1",
     "podUID": "6f1c...",
     "writtenBy": "extender",                      # or "device-plugin" (see below)
     "containers": {
       "main": {
         "nvidia.com/mps-core":   {"gpus": ["GPU-..."], "core": 50, "deviceIDs": ["GPU-...::core::0", ...]},
         "nvidia.com/mps-memory": {"gpus": ["GPU-..."], "memGiB": 8, "deviceIDs": ["GPU-...::mem::0", ...]}}},
     "keyId": "3f9a0c1d2e4b5a69",                  # which extender key signed it (tessera.signingkeys)
     "signature": "<base64url Ed25519 signature>"}

The signature is Ed25519 by the extender's private key over ``canonical JSON of the document
without "signature" and "keyId"`` + ``b"\\n"`` + the pod UID (+ ``b"\\nkey:"`` + the key id where the
document names one, so the name is signed too): nodes hold only the public keys, so no node can
forge a grant for another, and a document copied onto another pod fails (the UID is signed, and
checked against the pod it sits on). A pod that reached a node without the extender gets an
assignment written by the device plugin itself (``writtenBy: device-plugin``, no signature): it
completes the ledger and is never trusted as an instruction. The plugin also records what the kubelet
gave each pod in ``tessera.io/allocated`` (``tessera.allocated``, containers as above).

Verifiers trust a set of public keys (the current one and those a rotation keeps): a document that
names its key is checked with that key alone, and refused when the key is not trusted; one written
before key ids (no ``keyId``) is checked against each trusted key.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

ASSIGNMENT_VERSION = 1
WRITTEN_BY_EXTENDER = "extender"
WRITTEN_BY_PLUGIN = "device-plugin"
_CONTEXT = b"tessera.io/assignment/v1\n"


class AssignmentError(ValueError):
    """An assignment that cannot be read or trusted; the message says why in one line."""


@dataclass(frozen=True)
class ResourceAssignment:
    """What one container gets of one resource."""

    gpus: tuple[str, ...]  # GPU UUIDs, or MIG instance UUIDs for mig-* resources
    device_ids: tuple[str, ...] = ()  # the kubelet device IDs to prefer
    core: int | None = None  # mps-core: percent of one GPU, or whole hundreds
    mem_gib: int | None = None  # mps-memory: GiB of that GPU

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {"gpus": list(self.gpus), "deviceIDs": list(self.device_ids)}
        if self.core is not None:
            doc["core"] = self.core
        if self.mem_gib is not None:
            doc["memGiB"] = self.mem_gib
        return doc


@dataclass(frozen=True)
class Assignment:
    """A pod's assignment: per container, per resource, what it gets."""

    node: str
    pod_uid: str
    containers: dict[str, dict[str, ResourceAssignment]] = field(default_factory=dict)
    written_by: str = WRITTEN_BY_EXTENDER
    version: int = ASSIGNMENT_VERSION
    # the id of the key its signature was checked with (set by verify_assignment; not part of the document)
    key_id: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """The document without its signature."""
        return {"version": self.version, "node": self.node, "podUID": self.pod_uid, "writtenBy": self.written_by,
                "containers": {c: {r: g.to_dict() for r, g in res.items()} for c, res in self.containers.items()}}

    def canonical_json(self) -> bytes:
        """Sorted keys, no spaces, UTF-8: the bytes that are signed."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _message(doc: Assignment, kid: str | None) -> bytes:
    message = _CONTEXT + doc.canonical_json() + b"\n" + doc.pod_uid.encode()
    return message if kid is None else message + b"\nkey:" + kid.encode()


def sign_assignment(doc: Assignment, private_key) -> str:
    """The annotation value for ``doc``, signed with the extender's Ed25519 private key and naming it."""
    from tessera.signingkeys import key_id

    if doc.written_by != WRITTEN_BY_EXTENDER:
        raise AssignmentError("only the extender signs assignments")
    kid = key_id(private_key.public_key())
    body = doc.to_dict()
    body["keyId"] = kid
    body["signature"] = _b64(private_key.sign(_message(doc, kid)))
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def plugin_assignment(doc: Assignment) -> str:
    """The annotation value of an assignment the device plugin writes itself (unsigned, marked)."""
    if doc.written_by != WRITTEN_BY_PLUGIN:
        raise AssignmentError("a plugin-written assignment must say writtenBy: device-plugin")
    return json.dumps(doc.to_dict(), sort_keys=True, separators=(",", ":"))


def read_json_object(value: object, what: str, error: type[AssignmentError] = AssignmentError) -> dict:
    """An annotation value read as a JSON object; ``error`` saying that ``what`` is not one."""
    if not isinstance(value, str):
        raise error(f"{what} is not a string")
    try:
        raw = json.loads(value)
    except ValueError:
        raise error(f"{what} is not JSON") from None
    if not isinstance(raw, dict):
        raise error(f"{what} is not a JSON object")
    return raw


def read_assignment(annotation: object) -> tuple[Assignment, str | None]:
    """Parse an annotation value (no trust implied): the document and its signature, if any."""
    doc, signature, _ = _read(annotation)
    return doc, signature


def _read(annotation: object) -> tuple[Assignment, str | None, str | None]:
    raw = read_json_object(annotation, "assignment")
    if raw.get("version") != ASSIGNMENT_VERSION:
        raise AssignmentError(f"assignment version {raw.get('version')!r} is not {ASSIGNMENT_VERSION}")
    node, uid, by = raw.get("node"), raw.get("podUID"), raw.get("writtenBy")
    if not all(isinstance(v, str) and v for v in (node, uid, by)):
        raise AssignmentError("assignment needs node, podUID and writtenBy strings")
    containers = read_containers(raw.get("containers"), "assignment")
    signature = raw.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise AssignmentError("assignment.signature must be a string")
    kid = raw.get("keyId")
    if kid is not None and not (isinstance(kid, str) and kid):
        raise AssignmentError("assignment.keyId must be a non-empty string")
    return Assignment(node=node, pod_uid=uid, containers=containers, written_by=by), signature, kid


def read_containers(doc: object, where: str) -> dict[str, dict[str, ResourceAssignment]]:
    """Per container, per resource, what a document's ``containers`` object holds; AssignmentError naming
    ``where`` in the document when it is malformed."""
    if not isinstance(doc, dict):
        raise AssignmentError(f"{where}.containers must be an object")
    containers: dict[str, dict[str, ResourceAssignment]] = {}
    for cname, resources in doc.items():
        if not isinstance(resources, dict):
            raise AssignmentError(f"{where}.containers.{cname} must be an object")
        containers[cname] = {r: _grant(g, f"{where}.containers.{cname}.{r}") for r, g in resources.items()}
    return containers


def _grant(doc: object, where: str) -> ResourceAssignment:
    if not isinstance(doc, dict):
        raise AssignmentError(f"{where} must be an object")
    gpus, ids = doc.get("gpus", []), doc.get("deviceIDs", [])
    for name, value in (("gpus", gpus), ("deviceIDs", ids)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise AssignmentError(f"{where}.{name} must be a list of strings")
    core, mem = doc.get("core"), doc.get("memGiB")
    for name, value in (("core", core), ("memGiB", mem)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise AssignmentError(f"{where}.{name} must be a positive whole number")
    return ResourceAssignment(gpus=tuple(gpus), device_ids=tuple(ids), core=core, mem_gib=mem)


def verify_assignment(annotation: object, pod_uid: str, public_keys, node: str | None = None) -> Assignment:
    """The assignment if the extender signed it for this pod (and node) with one of ``public_keys`` (one
    Ed25519 public key, several, or a ``TrustedKeys``), its ``key_id`` that key's; AssignmentError otherwise."""
    from tessera.signingkeys import as_trusted

    doc, signature, kid = _read(annotation)
    if doc.written_by != WRITTEN_BY_EXTENDER or not signature:
        raise AssignmentError(f"assignment written by {doc.written_by!r} carries no extender signature")
    if doc.pod_uid != pod_uid:
        raise AssignmentError(f"assignment is for pod {doc.pod_uid}, not {pod_uid}: copied from another pod")
    if node is not None and doc.node != node:
        raise AssignmentError(f"assignment is for node {doc.node!r}, not {node!r}")
    trusted = as_trusted(public_keys)
    if kid is not None:
        key = trusted.get(kid)
        if key is None:
            raise AssignmentError(f"assignment has a bad signature: signed by key {kid}, which is not trusted here "
                                  f"(trusted: {', '.join(trusted.ids) or 'none'})")
        candidates = [(kid, key)]
    else:  # written before assignments named their key
        candidates = list(zip(trusted.ids, trusted))
    for name, key in candidates:
        if _signed_by(key, signature, _message(doc, kid)):
            return replace(doc, key_id=name)
    raise AssignmentError("assignment has a bad signature: not written by the extender")


def _signed_by(public_key, signature: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(_unb64(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_public_key(path: str):
    """The extender's Ed25519 public key from a PEM file."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    with open(path, "rb") as fh:
        key = load_pem_public_key(fh.read())
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, Ed25519PublicKey):
        raise AssignmentError(f"{path} does not hold an Ed25519 public key")
    return key


def load_private_key(path: str):
    """The extender's Ed25519 private key from a PEM file (PKCS8, unencrypted)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as fh:
        key = load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise AssignmentError(f"{path} does not hold an Ed25519 private key")
    return key


def generate_keypair(private_path: str, public_path: str):
    """Write a new Ed25519 key pair as PEM (private mode 0600); returns the private key."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    with open(public_path, "wb") as fh:
        fh.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return key
