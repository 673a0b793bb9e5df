"""The signed grant: what the device plugin's Allocate gave one container, for the OCI hook to verify.

Allocate carries no pod identity, and the kubelet merges one container's responses first-wins per
annotation key, so each resource gets its own annotation:

    tessera.io/grant.<resource without "nvidia.com/">
        tessera.io/grant.gpu, tessera.io/grant.mps-core, tessera.io/grant.mps-memory,
        tessera.io/grant.gpu.shared, tessera.io/grant.mig-3g.40gb

Its value is three dot-separated fields::

    v1.<payload>.<mac>

- ``payload``: base64url without padding of the canonical JSON (sorted keys, no spaces, UTF-8) of::

      {"v": 1,
       "resource": "nvidia.com/mps-core",     # must match the annotation key
       "node": "gpu-node-1",                  # the node whose key signed it
       "nonce": "<32 lowercase hex digits>",  # 128 random bits, one per Allocate response
       "issued": 1712345678,                  # unix seconds
       "ids": ["GPU-...::core::0", ...],      # the kubelet's device IDs that were allocated
       "uuids": ["GPU-..."],                  # GPU UUIDs, or MIG instance UUIDs for mig-* resources
       "paths": ["/dev/nvidia0", ...],        # device nodes the container gets (host path = container path)
       "core": 50,                            # mps-core only: percent of one GPU; 200, 300.. = whole GPUs
       "mem_gib": 8,                          # mps-memory only: GiB of that GPU
       "pipe": "/run/tessera/mps/pipe"}       # mps-core only: CUDA_MPS_PIPE_DIRECTORY in the container

- ``mac``: base64url without padding of HMAC-SHA256(node key,
  ``b"tessera.io/grant/v1\\n" + annotation key + b"\\n" + payload``), so a value moved to another
  resource's key fails too.

The node key is a root-only file (mode 0600) that only the device plugin and the hook read: both
sides hold it, so a symmetric MAC is enough, and a user, who cannot read it, cannot mint a grant.
A grant names no pod; the hook binds its nonce to the first pod UID that starts with it.

The environment a grant implies (:func:`grant_env`) is the contract between both sides: the plugin
puts exactly these variables in its Allocate response, the hook refuses a container whose
environment says anything else. Standard library only: the hook imports this at every start.

The DRA driver's grants travel in the environment instead, because a CDI spec can set variables and
device nodes but no OCI annotation: ``TESSERA_GRANT_<nonce>=v1.<payload>.<mac>``, the same signed
value, its MAC still over the resource's annotation key (:func:`env_entry`, :func:`verify_env`).
A variable per grant, named by its nonce, so that two claims' grants in one container do not
overwrite each other. A tenant may write such a variable in their pod; it verifies only if the node
signed it, and a copied one is refused by the nonce's binding to the pod that used it first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time

from tessera.deviceids import MEM, parse_share

GRANT_ANNOTATION_PREFIX = "tessera.io/grant."
GRANT_ENV_PREFIX = "TESSERA_GRANT_"
GRANT_VERSION = "v1"
RESOURCE_PREFIX = "nvidia.com/"
RESOURCE_MPS_CORE = "nvidia.com/mps-core"
RESOURCE_MPS_MEMORY = "nvidia.com/mps-memory"
MIN_KEY_BYTES = 32
_MAC_CONTEXT = b"tessera.io/grant/v1\n"
_HEX = frozenset("0123456789abcdef")


class GrantError(ValueError):
    """A grant that cannot be trusted or used; the message says why in one line."""


class Grant:
    """One resource's grant to one container, as signed by the node's device plugin."""

    __slots__ = ("resource", "node", "nonce", "issued", "ids", "uuids", "paths", "core", "mem_gib", "pipe")

    def __init__(self, resource: str, node: str, nonce: str, issued: int, ids: list[str], uuids: list[str],
                 paths: list[str], core: int | None = None, mem_gib: int | None = None,
                 pipe: str | None = None) -> None:
        self.resource, self.node, self.nonce, self.issued = resource, node, nonce, issued
        self.ids, self.uuids, self.paths = list(ids), list(uuids), list(paths)
        self.core, self.mem_gib, self.pipe = core, mem_gib, pipe

    @property
    def annotation_key(self) -> str:
        """The container annotation this grant travels in."""
        return annotation_key(self.resource)

    @property
    def is_mps(self) -> bool:
        return self.resource in (RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY)

    def to_dict(self) -> dict:
        """The payload document (optional fields only where set)."""
        doc = {"v": 1, "resource": self.resource, "node": self.node, "nonce": self.nonce, "issued": self.issued,
               "ids": self.ids, "uuids": self.uuids, "paths": self.paths}
        for name in ("core", "mem_gib", "pipe"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        return doc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grant) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Grant({self.to_dict()!r})"


def annotation_key(resource: str) -> str:
    """``nvidia.com/mps-core`` -> ``tessera.io/grant.mps-core``."""
    if not resource.startswith(RESOURCE_PREFIX) or len(resource) == len(RESOURCE_PREFIX):
        raise GrantError(f"resource {resource!r} is not an nvidia.com/ resource")
    return GRANT_ANNOTATION_PREFIX + resource[len(RESOURCE_PREFIX):]


def new_grant(resource: str, node: str, ids: list[str], uuids: list[str], paths: list[str], *,
              core: int | None = None, mem_gib: int | None = None, pipe: str | None = None,
              now: float | None = None) -> Grant:
    """A fresh grant with a random nonce, checked as :func:`verify` would check it."""
    grant = Grant(resource, node, os.urandom(16).hex(), int(time.time() if now is None else now),
                  ids, uuids, paths, core, mem_gib, pipe)
    _check(grant.to_dict(), annotation_key(resource))
    return grant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, ann_key: str, payload: str) -> str:
    msg = _MAC_CONTEXT + ann_key.encode() + b"\n" + payload.encode("ascii")
    return _b64(hmac.new(key, msg, hashlib.sha256).digest())


def sign(grant: Grant, key: bytes) -> str:
    """The annotation value for ``grant``, signed with the node key."""
    payload = _b64(json.dumps(grant.to_dict(), sort_keys=True, separators=(",", ":")).encode())
    return f"{GRANT_VERSION}.{payload}.{_mac(key, grant.annotation_key, payload)}"


def encode(grant: Grant, key: bytes) -> dict[str, str]:
    """``{annotation key: signed value}``, ready for ContainerAllocateResponse.annotations."""
    return {grant.annotation_key: sign(grant, key)}


def env_name(grant: Grant) -> str:
    """The environment variable a grant travels in when it cannot be an annotation (DRA's CDI specs)."""
    return GRANT_ENV_PREFIX + grant.nonce


def env_entry(grant: Grant, key: bytes) -> tuple[str, str]:
    """``(variable, signed value)`` for ``grant``."""
    return env_name(grant), sign(grant, key)


def verify_env(name: str, value: str, key: bytes) -> Grant:
    """The grant in environment variable ``name``, or GrantError: as :func:`verify`, and the variable
    must be named after the grant's own nonce."""
    parts = value.split(".")
    resource = None
    if len(parts) == 3:
        try:
            doc = json.loads(_unb64(parts[1]))
            resource = doc.get("resource") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError):
            resource = None
    if not isinstance(resource, str) or not resource.startswith(RESOURCE_PREFIX):
        raise GrantError(f"variable {name} is not a {GRANT_VERSION} grant (expected v1.<payload>.<mac>)")
    grant = verify(annotation_key(resource), value, key)
    if name != env_name(grant):
        raise GrantError(f"variable {name} carries the grant named {env_name(grant)}; a grant is not moved")
    return grant


def grant_env_entries(env: list[str]) -> list[tuple[str, str]]:
    """The ``TESSERA_GRANT_*`` entries of an OCI ``process.env`` list, every copy, in order."""
    return [tuple(item.split("=", 1)) for item in env if item.startswith(GRANT_ENV_PREFIX) and "=" in item]


def grant_annotations(annotations: dict) -> dict[str, str]:
    """The ``tessera.io/grant.*`` entries of a container's annotations."""
    return {k: v for k, v in annotations.items() if k.startswith(GRANT_ANNOTATION_PREFIX)}


def verify(ann_key: str, value: object, key: bytes) -> Grant:
    """The grant in one annotation, or GrantError: bad shape, bad signature, or a bad field."""
    if not isinstance(value, str):
        raise GrantError(f"annotation {ann_key} is not a string")
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != GRANT_VERSION:
        raise GrantError(f"annotation {ann_key} is not a {GRANT_VERSION} grant (expected v1.<payload>.<mac>)")
    _, payload, mac = parts
    try:
        good = hmac.compare_digest(_mac(key, ann_key, payload), mac)
    except (UnicodeEncodeError, TypeError):
        good = False
    if not good:
        raise GrantError(f"annotation {ann_key} has a bad signature: it was not issued by this node's "
                         "device plugin (a pod cannot write its own grant)")
    try:
        doc = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        raise GrantError(f"annotation {ann_key}: payload is not base64url JSON") from None
    _check(doc, ann_key)
    return _from_payload(doc)


def grant_from_payload(doc: object) -> Grant:
    """A grant from its payload document as ``Grant.to_dict`` writes it (no signature implied: for
    documents that travel where only root writes, such as the hook's container records); GrantError
    when it is not a well-formed payload."""
    resource = doc.get("resource") if isinstance(doc, dict) else None
    if not isinstance(resource, str):
        raise GrantError("grant payload names no resource")
    _check(doc, annotation_key(resource))
    return _from_payload(doc)


def _from_payload(doc: dict) -> Grant:
    return Grant(doc["resource"], doc["node"], doc["nonce"], doc["issued"], doc["ids"], doc["uuids"],
                 doc["paths"], doc.get("core"), doc.get("mem_gib"), doc.get("pipe"))


def _str_list(doc: dict, name: str, ann_key: str, nonempty: bool = True) -> list[str]:
    value = doc.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (nonempty and not value):
        raise GrantError(f"annotation {ann_key}: {name!r} must be a list of strings")
    return value


def _positive_int(doc: dict, name: str, ann_key: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GrantError(f"annotation {ann_key}: {name!r} must be a positive whole number, not {value!r}")
    return value


def _check(doc: object, ann_key: str) -> None:
    """Raise GrantError unless ``doc`` is a well-formed grant payload for ``ann_key``."""
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise GrantError(f"annotation {ann_key}: payload is not a version 1 grant")
    resource = doc.get("resource")
    if not isinstance(resource, str) or annotation_key(resource) != ann_key:
        raise GrantError(f"annotation {ann_key}: grant is for {resource!r}, not for this key")
    nonce = doc.get("nonce")
    if not isinstance(nonce, str) or len(nonce) != 32 or not set(nonce) <= _HEX:
        raise GrantError(f"annotation {ann_key}: nonce must be 32 lowercase hex digits")
    if not isinstance(doc.get("node"), str) or not isinstance(doc.get("issued"), int):
        raise GrantError(f"annotation {ann_key}: 'node' must be a string and 'issued' unix seconds")
    _str_list(doc, "ids", ann_key)
    _str_list(doc, "uuids", ann_key)
    for path in _str_list(doc, "paths", ann_key):
        if not path.startswith("/dev/nvidia") or ".." in path:
            raise GrantError(f"annotation {ann_key}: device path {path!r} is not an NVIDIA device node")
    core, mem = _positive_int(doc, "core", ann_key), _positive_int(doc, "mem_gib", ann_key)
    pipe = doc.get("pipe")
    if resource == RESOURCE_MPS_CORE:
        if core is None or (core > 100 and core % 100):
            raise GrantError(f"annotation {ann_key}: 'core' must be 1..100 or whole hundreds, not {core!r}")
        if not isinstance(pipe, str) or not pipe.startswith("/"):
            raise GrantError(f"annotation {ann_key}: 'pipe' must be an absolute path")
    elif core is not None or pipe is not None:
        raise GrantError(f"annotation {ann_key}: 'core' and 'pipe' belong to {RESOURCE_MPS_CORE} grants only")
    if (resource == RESOURCE_MPS_MEMORY) != (mem is not None):
        raise GrantError(f"annotation {ann_key}: 'mem_gib' belongs to {RESOURCE_MPS_MEMORY} grants, and they need it")


def grant_env(grant: Grant) -> dict[str, str]:
    """The environment variables this grant sets in the container (the plugin sets exactly these)."""
    visible = ",".join(grant.uuids)
    env = {"NVIDIA_VISIBLE_DEVICES": visible, "CUDA_VISIBLE_DEVICES": visible}
    if grant.resource == RESOURCE_MPS_CORE:
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(min(grant.core or 100, 100))
        env["CUDA_MPS_PIPE_DIRECTORY"] = grant.pipe or ""
    if grant.resource == RESOURCE_MPS_MEMORY:
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = _pinned_memory_limit(grant)
    return env


def _pinned_memory_limit(grant: Grant) -> str:
    """MPS's per-device limit list, ``0=8G`` or ``0=80G,1=80G``: device ordinals follow the order of
    ``CUDA_VISIBLE_DEVICES`` (the grant's UUIDs); each device's GiB are its memory share IDs."""
    if len(grant.uuids) <= 1:
        return f"0={grant.mem_gib}G"
    mem_units = [share.gpu_uuid for share in map(parse_share, grant.ids) if share and share.kind == MEM]
    per_gpu = [mem_units.count(uuid) for uuid in grant.uuids]
    if sum(per_gpu) != grant.mem_gib:
        per_gpu = [(grant.mem_gib or 0) // len(grant.uuids)] * len(grant.uuids)
    return ",".join(f"{ordinal}={gib}G" for ordinal, gib in enumerate(per_gpu))


def container_env(grants: list[Grant]) -> dict[str, str]:
    """The environment all of one container's grants imply; GrantError where two disagree."""
    env: dict[str, str] = {}
    owner: dict[str, str] = {}
    for grant in grants:
        for name, value in grant_env(grant).items():
            if name in env and env[name] != value:
                raise GrantError(f"grants for {owner[name]} and {grant.resource} set {name} differently "
                                 f"({env[name]!r} vs {value!r}): one kind of GPU grant per container")
            env.setdefault(name, value)
            owner.setdefault(name, grant.resource)
    return env


def load_key(path: str) -> bytes:
    """The node key from a root-only file; GrantError if missing, unreadable, too open or too short."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise GrantError(f"grant key {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GrantError(f"grant key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise GrantError(f"grant key {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 "
                             "(readable by its owner only)")
        if st.st_uid not in (0, os.geteuid()):
            raise GrantError(f"grant key {path} is owned by uid {st.st_uid}, not root")
        key = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if len(key) < MIN_KEY_BYTES:
        raise GrantError(f"grant key {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def generate_key(path: str) -> bytes:
    """Write a new random node key (64 hex characters) to ``path``, mode 0600; never overwrites."""
    key = os.urandom(32).hex().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, key + b"\n")
    finally:
        os.close(fd)
    return key
