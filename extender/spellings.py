"""Node-name arrays recognised by their bytes: kube-scheduler sends filter and prioritize the same
names pod after pod, so a body repeating an array is read without decoding thousands of names again
(``wire.split_node_names`` finds the array; ``placement.namelists`` then recognises the list)."""

from __future__ import annotations

import threading

MAX_SPELLINGS = 16


class Spellings:
    """The last few node-name arrays as they were sent (bytes) with the names they decoded to.
    Thread-safe on its own lock; the names lists returned are shared: read them, never change them."""

    def __init__(self, size: int = MAX_SPELLINGS) -> None:
        self.size = size
        self._kept: list[tuple[bytes, list[str]]] = []
        self._lock = threading.Lock()

    def names(self, raw: bytes) -> list[str] | None:
        """The names ``raw`` decoded to when it was last sent, or None."""
        n = len(raw)
        with self._lock:
            for spelled, names in self._kept:
                if len(spelled) == n and spelled == raw:
                    return names
        return None

    def remember(self, raw: bytes, names: list[str]) -> None:
        """Keep ``raw`` with the names it decodes to (the oldest kept array makes room)."""
        with self._lock:
            self._kept.insert(0, (raw, names))
            del self._kept[self.size:]
