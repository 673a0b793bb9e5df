"""A map that keeps only its newest entries: writing a key makes it the newest, and past the limit the
oldest written goes first. Reading changes no order. For what a daemon remembers of the pods it has
seen (requests parsed by pod UID, pods already counted, pods waiting), bounded in memory rather than in
time. It takes no lock: its owner's lock guards it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Newest(Generic[K, V]):
    """The ``limit`` most recently written entries of a map."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The entry's value, or ``default``; its place in the order is unchanged."""
        return self._entries.get(key, default)

    def put(self, key: K, value: V) -> None:
        """Write an entry, now the newest; the oldest goes while there are more than ``limit``."""
        entries = self._entries
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self.limit:
            entries.popitem(last=False)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove an entry; its value, or ``default`` where there was none."""
        return self._entries.pop(key, default)

    def values(self) -> list[V]:
        """The values, oldest written first (a copy)."""
        return list(self._entries.values())
