"""The hook's container records, read back: which container a pid or cgroup belongs to, and its grants.

The hook (``hook/records.py``) writes ``<state_dir>/<container-id>.json`` at container start and
removes it at poststop: pod, namespace, pod UID, container, the container's init pid, its cgroup
paths and the grants it started with. Files are re-parsed only when they change.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from exporter.podresources import ContainerRef
from tessera.log import get_logger

__all__ = ["ContainerRecord", "GrantTerms", "RecordReader"]

log = get_logger("exporter")


@dataclass(frozen=True)
class GrantTerms:
    """What one signed grant gave: the resource, the GPU or MIG UUIDs, and MPS amounts."""

    resource: str
    uuids: tuple[str, ...]
    core: int | None = None  # mps-core percent (200, 300 .. = whole GPUs)
    mem_gib: int | None = None  # mps-memory GiB


@dataclass(frozen=True)
class ContainerRecord:
    """One running container that the hook let start with a grant."""

    container_id: str
    ref: ContainerRef
    pod_uid: str
    pid: int
    cgroups: tuple[str, ...]  # every cgroup path of the container's init process
    grants: tuple[GrantTerms, ...]


def _record(doc: dict) -> ContainerRecord:
    grants = tuple(
        GrantTerms(str(g["resource"]), tuple(str(u) for u in g.get("uuids") or ()), g.get("core"), g.get("mem_gib"))
        for g in doc.get("grants") or ()
    )
    paths = {p for p in (doc.get("cgroups") or {}).values() if isinstance(p, str) and p not in ("", "/")}
    if isinstance(doc.get("cgroup"), str) and doc["cgroup"] not in ("", "/"):
        paths.add(doc["cgroup"])
    return ContainerRecord(
        container_id=str(doc["container_id"]),
        ref=ContainerRef(str(doc["namespace"]), str(doc["pod"]), str(doc["container"])),
        pod_uid=str(doc.get("pod_uid") or ""), pid=int(doc.get("pid") or 0),
        cgroups=tuple(sorted(paths)), grants=grants,
    )


class RecordReader:
    """Reads the state directory; keeps parsed records keyed by file, re-read when mtime or size changes."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._cache: dict[str, tuple[tuple[int, int], ContainerRecord | None]] = {}

    def read(self) -> list[ContainerRecord]:
        """Every readable record now; a bad file is logged once (per change) and skipped."""
        try:
            names = [n for n in os.listdir(self.state_dir) if n.endswith(".json")]
        except FileNotFoundError:
            names = []
        except OSError as err:
            log.warning("container_records_unreadable", state_dir=self.state_dir, reason=err.strerror)
            names = []
        records, seen = [], set()
        for name in names:
            path = os.path.join(self.state_dir, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            seen.add(name)
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, self._parse(path))
                self._cache[name] = cached
            if cached[1] is not None:
                records.append(cached[1])
        for gone in set(self._cache) - seen:  # containers that stopped: forget them
            del self._cache[gone]
        return records

    @staticmethod
    def _parse(path: str) -> ContainerRecord | None:
        try:
            with open(path, encoding="utf-8") as fh:
                return _record(json.load(fh))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("container_record_skipped", path=path, reason=str(err))
            return None
