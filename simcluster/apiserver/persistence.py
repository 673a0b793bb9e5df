"""Persistence: the cluster in one JSON file, written atomically and at most every ``debounce`` seconds.

A write marks the store dirty; a background thread snapshots it (one join of already serialized
objects) and replaces the file by temp file + ``os.replace``. ``stop()`` writes the last state.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from tessera.log import get_logger

from .store import Store

log = get_logger("apiserver")


def load_into(store: Store, path: Path) -> bool:
    """Fill ``store`` from ``path`` when it exists; returns whether it did."""
    if not path.exists():
        return False
    data = json.loads(path.read_bytes())
    store.load(int(data["resourceVersion"]), data.get("objects") or {})
    log.info("cluster_restored", path=str(path), resource_version=data["resourceVersion"])
    return True


class Persister:
    """Writes ``store`` to ``path`` after changes, debounced."""

    def __init__(self, store: Store, path: Path, debounce: float = 0.2) -> None:
        self.store = store
        self.path = Path(path)
        self.debounce = debounce
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apiserver-persist", daemon=True)
        self.writes = 0
        store.add_listener(self._dirty.set)

    def start(self) -> None:
        """Begin writing in the background."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait(0.5)
            if self._dirty.is_set() and not self._stopping.wait(self.debounce):
                self.flush()

    def flush(self) -> None:
        """Write the current state now."""
        self._dirty.clear()
        data = self.store.snapshot()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1
        log.debug("cluster_persisted", path=str(self.path), bytes=len(data))

    def stop(self) -> None:
        """Stop the thread and write the final state."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
