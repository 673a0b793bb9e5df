"""The container being started, as the hook sees it: the OCI state on stdin and the bundle's config.json.

Only the facts the hook checks are pulled out, each validated enough that a malformed document
gives one clear :class:`HookFailure` line instead of a traceback.
"""

from __future__ import annotations

import json
import os

from hook.errors import HookFailure

# Annotation keys that name the pod, per runtime: chosen by configuration, never by which keys
# happen to be present (a CRI-O pod can write any annotation that containerd would set).
IDENTITY_KEYS = {
    "containerd": ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.cri.sandbox-name",
                   "io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.container-name"),
    "crio": ("io.kubernetes.pod.uid", "io.kubernetes.pod.name", "io.kubernetes.pod.namespace",
             "io.kubernetes.container.name"),
}
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class OciState:
    """The runtime's state document: container ID, init PID, bundle directory."""

    __slots__ = ("id", "pid", "bundle")

    def __init__(self, id: str, pid: int, bundle: str) -> None:
        self.id, self.pid, self.bundle = id, pid, bundle


def load_json(raw: bytes | str, what: str) -> object:
    """Parse a JSON document the runtime handed over; HookFailure naming ``what`` where it cannot be.

    A document nested deeper than Python's recursion limit is refused as such (json raises
    RecursionError on it), never passed on as an internal error.
    """
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise HookFailure(f"{what} is not JSON ({err})") from None
    except RecursionError:
        raise HookFailure(f"{what} is nested too deeply to be a runtime's document") from None


def parse_state(raw: bytes | str) -> OciState:
    """Validate the OCI state read from stdin."""
    doc = load_json(raw, "OCI state on stdin")
    if not isinstance(doc, dict):
        raise HookFailure("OCI state on stdin is not a JSON object")
    cid, bundle, pid = doc.get("id"), doc.get("bundle"), doc.get("pid", 0)
    if not isinstance(cid, str) or not cid or not set(cid) <= _ID_CHARS or cid.startswith("."):
        raise HookFailure(f"OCI state has no usable container id ({cid!r})")
    if not isinstance(bundle, str) or not os.path.isabs(bundle):
        raise HookFailure(f"OCI state has no absolute bundle path ({bundle!r})")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
        raise HookFailure(f"OCI state has a bad pid ({pid!r})")
    return OciState(cid, pid, bundle)


class PodIdentity:
    """Who the container belongs to, from the runtime's own annotations."""

    __slots__ = ("uid", "name", "namespace", "container")

    def __init__(self, uid: str, name: str, namespace: str, container: str) -> None:
        self.uid, self.name, self.namespace, self.container = uid, name, namespace, container

    def describe(self) -> str:
        return f"{self.namespace}/{self.name} container {self.container}"


class ContainerSpec:
    """The parts of config.json the hook checks."""

    __slots__ = ("annotations", "env", "uid", "devices", "device_rules", "mounts")

    def __init__(self, annotations: dict, env: list[str], uid: int, devices: list[dict],
                 device_rules: list[dict], mounts: list[dict]) -> None:
        self.annotations, self.env, self.uid = annotations, env, uid
        self.devices, self.device_rules, self.mounts = devices, device_rules, mounts

    def identity(self, runtime: str) -> PodIdentity:
        """The pod as the configured runtime names it (empty strings where a key is missing)."""
        keys = IDENTITY_KEYS[runtime]
        values = [self.annotations.get(k) for k in keys]
        return PodIdentity(*(v if isinstance(v, str) else "" for v in values))

    def env_values(self, name: str) -> list[str]:
        """Every value ``name`` has in process.env, in order (containerd may keep several)."""
        prefix = name + "="
        return [item[len(prefix):] for item in self.env if item.startswith(prefix)]


def _list_of_dicts(value: object, where: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise HookFailure(f"config.json: {where} is not a list of objects")
    return value


def parse_spec(doc: object) -> ContainerSpec:
    """Validate a parsed config.json and pull out what the hook needs."""
    if not isinstance(doc, dict):
        raise HookFailure("config.json is not a JSON object")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise HookFailure("config.json: annotations is not an object")
    process = doc.get("process") or {}
    if not isinstance(process, dict):
        raise HookFailure("config.json: process is not an object")
    env = process.get("env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise HookFailure("config.json: process.env is not a list of strings")
    user = process.get("user") or {}
    uid = user.get("uid", 0) if isinstance(user, dict) else None
    if not isinstance(uid, int) or isinstance(uid, bool):
        raise HookFailure(f"config.json: process.user.uid is not a number ({uid!r})")
    linux = doc.get("linux") or {}
    if not isinstance(linux, dict):
        raise HookFailure("config.json: linux is not an object")
    resources = linux.get("resources") or {}
    if not isinstance(resources, dict):
        raise HookFailure("config.json: linux.resources is not an object")
    return ContainerSpec(annotations, env, uid, _list_of_dicts(linux.get("devices"), "linux.devices"),
                         _list_of_dicts(resources.get("devices"), "linux.resources.devices"),
                         _list_of_dicts(doc.get("mounts"), "mounts"))


def read_spec(bundle: str) -> ContainerSpec:
    """Read and validate ``<bundle>/config.json``."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise HookFailure(f"cannot read {path}: {err.strerror}") from None
    return parse_spec(load_json(raw, path))
