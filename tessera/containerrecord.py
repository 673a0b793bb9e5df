"""The hook's container record: ``<state_dir>/<container-id>.json``, one per running granted container.

The OCI hook writes it at container start (``hook/records.py``) and removes it at poststop; the
exporter reads it (``exporter/records.py``) to map a GPU process to its container and to measure the
container against its grants. One document, one codec, standard library only (the hook imports it at
every container start)::

    {"container_id": "<64 hex>", "pid": 4242, "pod": "train", "namespace": "team-a", "pod_uid": "6f1c...",
     "container": "main", "started": 1712345678,
     "cgroup": "/kubepods.slice/...",           # the devices (v1) or unified (v2) path, for older readers
     "cgroups": {"": "/kubepods.slice/..."},    # controller ("" for cgroup v2) -> path of the init process
     "grants": [<grant payload, tessera.grant>, ...],
     "env": {"CUDA_VISIBLE_DEVICES": "GPU-...", ...}}

    text = encode_record(record)
    record = decode_record(text)      # ContainerRecordError (one line) for anything else
"""

from __future__ import annotations

import json

from tessera.grant import Grant, GrantError, grant_from_payload


class ContainerRecordError(ValueError):
    """A container record that cannot be read; the message says why in one line."""


class ContainerRecord:
    """One running container that the hook let start with its grants."""

    __slots__ = ("container_id", "pid", "pod", "namespace", "pod_uid", "container", "started", "cgroups",
                 "grants", "env")

    def __init__(self, container_id: str, pid: int, pod: str, namespace: str, pod_uid: str, container: str,
                 started: int = 0, cgroups: dict[str, str] | None = None, grants: tuple[Grant, ...] | list[Grant] = (),
                 env: dict[str, str] | None = None) -> None:
        self.container_id, self.pid, self.pod, self.namespace = container_id, pid, pod, namespace
        self.pod_uid, self.container, self.started = pod_uid, container, started
        self.cgroups = dict(cgroups or {})  # controller ("" for cgroup v2) -> path
        self.grants = tuple(grants)
        self.env = dict(env or {})

    @property
    def cgroup(self) -> str:
        """The devices controller's path (cgroup v1), else the unified one (v2)."""
        return self.cgroups.get("devices") or self.cgroups.get("", "")

    @property
    def cgroup_paths(self) -> tuple[str, ...]:
        """Every cgroup path of the container's init process, sorted (the root ``/`` left out)."""
        return tuple(sorted({p for p in self.cgroups.values() if p not in ("", "/")}))

    def to_dict(self) -> dict:
        """The document as written."""
        return {"container_id": self.container_id, "pid": self.pid, "pod": self.pod, "namespace": self.namespace,
                "pod_uid": self.pod_uid, "container": self.container, "started": self.started,
                "cgroup": self.cgroup, "cgroups": self.cgroups, "grants": [g.to_dict() for g in self.grants],
                "env": self.env}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContainerRecord) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ContainerRecord({self.to_dict()!r})"


def encode_record(record: ContainerRecord) -> str:
    """The file's text (sorted keys)."""
    return json.dumps(record.to_dict(), sort_keys=True)


def _field(doc: dict, name: str, kind: type, default: object = None):
    value = doc.get(name, default)
    if not isinstance(value, kind) or isinstance(value, bool) or value is None:
        raise ContainerRecordError(f"container record: {name!r} must be a {kind.__name__}, not {value!r}")
    return value


def _str_map(doc: dict, name: str) -> dict[str, str]:
    value = _field(doc, name, dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ContainerRecordError(f"container record: {name!r} must map strings to strings")
    return value


def decode_record(text: str | bytes) -> ContainerRecord:
    """Read a record (no trust implied beyond the directory's); ContainerRecordError when it is not one."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ContainerRecordError("container record is not JSON") from None
    if not isinstance(doc, dict):
        raise ContainerRecordError("container record is not a JSON object")
    names = [_field(doc, name, str) for name in ("container_id", "pod", "namespace", "container")]
    if not all(names):
        raise ContainerRecordError("container record needs container_id, pod, namespace and container")
    cgroups = _str_map(doc, "cgroups")
    legacy = doc.get("cgroup")
    if isinstance(legacy, str) and legacy not in ("", "/") and legacy not in cgroups.values():
        cgroups = {**cgroups, "devices": legacy}  # written by a hook that kept one path only
    grants = []
    for i, payload in enumerate(_field(doc, "grants", list, [])):
        try:
            grants.append(grant_from_payload(payload))
        except GrantError as err:
            raise ContainerRecordError(f"container record: grants[{i}]: {err}") from None
    container_id, pod, namespace, container = names
    return ContainerRecord(container_id, _field(doc, "pid", int, 0), pod, namespace, _field(doc, "pod_uid", str, ""),
                           container, _field(doc, "started", int, 0), cgroups, grants, _str_map(doc, "env"))
