"""The hook's container records, read back: which container a pid or cgroup belongs to, and its grants.

The hook (``hook/records.py``) writes ``<state_dir>/<container-id>.json`` at container start and
removes it at poststop; both sides read and write it with one codec, ``tessera.containerrecord``
(pod, namespace, pod UID, container, the container's init pid, its cgroup paths and the signed grants
it started with, as ``tessera.grant.Grant``). Files are re-parsed only when they change.
"""

from __future__ import annotations

import os

from exporter.podresources import ContainerRef
from tessera.containerrecord import ContainerRecord, decode_record
from tessera.log import get_logger

__all__ = ["ContainerRecord", "RecordReader", "ref_of"]

log = get_logger("exporter")


def ref_of(record: ContainerRecord) -> ContainerRef:
    """The container a record names, as Kubernetes names it."""
    return ContainerRef(record.namespace, record.pod, record.container)


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
            with open(path, "rb") as fh:
                return decode_record(fh.read())
        except (OSError, ValueError) as err:
            log.warning("container_record_skipped", path=path, reason=str(err))
            return None
