"""The hook's files in the node's state directory: grant bindings and container records.

``<state_dir>/<container-id>.json``: one record per running granted container, for the exporter
(pod, namespace, container, grants, pid, cgroups; ``tessera.containerrecord``); written at start,
removed at poststop.

``<state_dir>/bindings/<nonce>``: the pod UID a grant's nonce was first started by. Created with
an atomic ``link`` (it exists with its content or not at all), never removed by the hook: a
container restart of the same pod passes, any other pod with that nonce is refused. The
directory lives on ``/run`` (tmpfs), so it starts empty after a reboot, as do the grants.
"""

from __future__ import annotations

import os
import time

from hook.errors import HookFailure, Refused
from tessera.containerrecord import ContainerRecord, encode_record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the hook's hot path
if TYPE_CHECKING:
    from hook.container import OciState, PodIdentity
    from tessera.grant import Grant

BINDINGS = "bindings"


def _ensure_dir(path: str, mode: int) -> None:
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as err:
        raise HookFailure(f"cannot create {path}: {err.strerror}") from None


def bind_grant(state_dir: str, grant: Grant, pod_uid: str) -> None:
    """Bind ``grant``'s nonce to ``pod_uid``, or refuse where another pod holds it."""
    directory = os.path.join(state_dir, BINDINGS)
    _ensure_dir(directory, 0o700)
    final = os.path.join(directory, grant.nonce)
    tmp = os.path.join(directory, f".{grant.nonce}.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(pod_uid)
        try:
            os.link(tmp, final)
            return
        except FileExistsError:
            pass
    except OSError as err:
        raise HookFailure(f"cannot bind grant in {directory}: {err.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    try:
        with open(final, encoding="utf-8") as fh:
            holder = fh.read()
    except OSError as err:
        raise HookFailure(f"cannot read grant binding {final}: {err.strerror}") from None
    if holder != pod_uid:
        raise Refused(f"grant {grant.annotation_key} (nonce {grant.nonce}) is already bound to pod {holder}; "
                      f"pod {pod_uid} cannot use a grant copied from another pod")


def record_path(state_dir: str, container_id: str) -> str:
    return os.path.join(state_dir, container_id + ".json")


def write_record(state_dir: str, state: OciState, pod: PodIdentity, grants: list[Grant],
                 cgroups: dict[str, str], env: dict[str, str]) -> str:
    """Write the container's record atomically; return its path."""
    _ensure_dir(state_dir, 0o755)
    record = ContainerRecord(state.id, state.pid, pod.name, pod.namespace, pod.uid, pod.container,
                             int(time.time()), cgroups, grants, env)
    path = record_path(state_dir, state.id)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(encode_record(record))
        os.replace(tmp, path)
    except OSError as err:
        raise HookFailure(f"cannot write container record {path}: {err.strerror}") from None
    return path


def remove_record(state_dir: str, container_id: str) -> bool:
    """Remove a container's record at poststop; False where there was none."""
    try:
        os.unlink(record_path(state_dir, container_id))
        return True
    except FileNotFoundError:
        return False
    except OSError as err:
        raise HookFailure(f"cannot remove container record: {err.strerror}") from None
