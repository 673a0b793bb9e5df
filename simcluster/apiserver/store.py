"""The object store: every object once, serialized once, with one resourceVersion counter.

Objects are kept as ``Entry(obj, raw)``: ``obj`` is never mutated after it is stored (readers may
look at it without copying), ``raw`` is its JSON. Pods are indexed by namespace and by
``spec.nodeName``; each resource keeps a bounded history of events for watch resumption, and
remembers the newest version it evicted, so a watch from before that answers 410 Expired.
All methods are thread-safe.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import already_exists, gone, not_found, stale
from .resources import RESOURCES, ResourceInfo
from .selectors import field_value
from .watch import StoreEvent, Watcher, dumps, event_line

Key = tuple[str, str]  # (namespace or "", name)


@dataclass(slots=True)
class Entry:
    """One stored object and its JSON."""

    obj: dict[str, Any]
    raw: bytes


class _Table:
    """The objects of one resource, with their indexes, history and watchers."""

    def __init__(self, info: ResourceInfo, history_size: int) -> None:
        self.info = info
        self.items: dict[Key, Entry] = {}
        self.by_ns: dict[str, dict[Key, Entry]] = {}
        self.index: dict[str, dict[str, dict[Key, None]]] = {f: {} for f in info.indexed_fields}
        self.sorted_keys: list[Key] | None = None
        self.history: deque[StoreEvent] = deque(maxlen=history_size)
        self.evicted_rv = 0
        self.watchers: set[Watcher] = set()

    def keys_sorted(self) -> list[Key]:
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.items)
        return self.sorted_keys

    def put(self, key: Key, entry: Entry, old: Entry | None) -> None:
        self.items[key] = entry
        self.by_ns.setdefault(key[0], {})[key] = entry
        if old is None:
            self.sorted_keys = None
        for f, idx in self.index.items():
            new_v = field_value(entry.obj, f)
            if old is not None:
                old_v = field_value(old.obj, f)
                if old_v == new_v:
                    continue
                idx.get(old_v, {}).pop(key, None)
            idx.setdefault(new_v, {})[key] = None

    def drop(self, key: Key) -> Entry:
        entry = self.items.pop(key)
        ns_items = self.by_ns.get(key[0], {})
        ns_items.pop(key, None)
        if not ns_items:
            self.by_ns.pop(key[0], None)
        self.sorted_keys = None
        for f, idx in self.index.items():
            idx.get(field_value(entry.obj, f), {}).pop(key, None)
        return entry

    def record(self, ev: StoreEvent) -> None:
        if len(self.history) == self.history.maxlen:
            self.evicted_rv = self.history[0].rv
        self.history.append(ev)
        for w in list(self.watchers):
            w.offer(ev)


class Store:
    """Every object of the cluster, thread-safe."""

    def __init__(self, history_size: int = 20_000) -> None:
        self._lock = threading.RLock()
        self._rv = 0
        self._tables = {info.name: _Table(info, history_size) for info in RESOURCES}
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ reads

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    def get(self, info: ResourceInfo, namespace: str, name: str) -> Entry | None:
        """The stored entry, or None (do not mutate ``entry.obj``)."""
        return self._tables[info.name].items.get((namespace, name))

    def require(self, info: ResourceInfo, namespace: str, name: str) -> Entry:
        """The stored entry, or a 404 ``ApiError``."""
        entry = self.get(info, namespace, name)
        if entry is None:
            raise not_found(info.name, name, info.group)
        return entry

    def list(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        index: tuple[str, str] | None = None,
        after: Key | None = None,
    ) -> tuple[list[tuple[Key, Entry]], int]:
        """Entries in key order (optionally in one namespace, by an indexed field value, after a key)."""
        table = self._tables[info.name]
        with self._lock:
            rv = self._rv
            if index is not None and index[0] in table.index:
                keys = sorted(table.index[index[0]].get(index[1], {}))
                if namespace is not None:
                    keys = [k for k in keys if k[0] == namespace]
            elif namespace is not None:
                keys = sorted(table.by_ns.get(namespace, {}))
            else:
                keys = table.keys_sorted()
            if after is not None:
                keys = keys[bisect.bisect_right(keys, after):]
            items = table.items
            return [(k, items[k]) for k in keys], rv

    def keys_in_namespace(self, namespace: str) -> list[tuple[ResourceInfo, Key]]:
        """Every namespaced object in ``namespace``."""
        with self._lock:
            out = []
            for table in self._tables.values():
                for key in table.by_ns.get(namespace, {}):
                    out.append((table.info, key))
            return out

    # ------------------------------------------------------------------ writes

    def _stamp(self, obj: dict[str, Any]) -> tuple[int, Entry]:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return self._rv, Entry(obj, dumps(obj))

    def _commit(self, table: _Table, etype: str, key: Key, rv: int, entry: Entry, prev: Entry | None) -> None:
        table.record(StoreEvent(etype, rv, key[0], entry.obj, prev.obj if prev else None, entry.raw,
                                event_line(etype, entry.raw)))
        for listener in self._listeners:
            listener()

    def create(self, info: ResourceInfo, obj: dict[str, Any]) -> Entry:
        """Store a new object (stamping its resourceVersion); 409 AlreadyExists if the name is taken."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if info.namespaced else "", meta["name"])
        table = self._tables[info.name]
        with self._lock:
            if key in table.items:
                raise already_exists(info.name, key[1], info.group)
            rv, entry = self._stamp(obj)
            table.put(key, entry, None)
            self._commit(table, "ADDED", key, rv, entry, None)
            return entry

    def update(self, info: ResourceInfo, obj: dict[str, Any], expected_rv: str | None) -> Entry:
        """Replace an object; 404 if gone, 409 if ``expected_rv`` is given and not the stored one."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if info.namespaced else "", meta["name"])
        table = self._tables[info.name]
        with self._lock:
            old = table.items.get(key)
            if old is None:
                raise not_found(info.name, key[1], info.group)
            if expected_rv and expected_rv != old.obj["metadata"]["resourceVersion"]:
                raise stale(info.name, key[1], info.group)
            rv, entry = self._stamp(obj)
            table.put(key, entry, old)
            self._commit(table, "MODIFIED", key, rv, entry, old)
            return entry

    def delete(self, info: ResourceInfo, namespace: str, name: str, expected_rv: str | None = None) -> Entry:
        """Remove an object; the DELETED event carries its last state at a new resourceVersion."""
        key = (namespace if info.namespaced else "", name)
        table = self._tables[info.name]
        with self._lock:
            old = table.items.get(key)
            if old is None:
                raise not_found(info.name, name, info.group)
            if expected_rv and expected_rv != old.obj["metadata"]["resourceVersion"]:
                raise stale(info.name, name, info.group)
            table.drop(key)
            final = dict(old.obj)
            final["metadata"] = dict(final["metadata"])
            rv, entry = self._stamp(final)
            self._commit(table, "DELETED", key, rv, entry, old)
            return entry

    # ------------------------------------------------------------------ watches

    def watch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        matcher: Callable[[dict[str, Any]], bool] | None,
        since: int | None,
    ) -> Watcher:
        """Open a watch. ``since=None``: synthetic ADDED for every current object first; else replay
        the events after ``since`` (410 Expired when history no longer reaches back that far)."""
        table = self._tables[info.name]
        watcher = Watcher(info.name, namespace, matcher)
        with self._lock:
            if since is None:
                source = table.by_ns.get(namespace, {}) if namespace is not None else table.items
                for key in sorted(source):
                    entry = source[key]
                    if matcher is None or matcher(entry.obj):
                        watcher.push_initial(entry.obj, entry.raw, self._rv)
            else:
                if since < table.evicted_rv:
                    raise gone(f"too old resource version: {since} ({table.evicted_rv})")
                for ev in table.history:
                    if ev.rv > since:
                        watcher.offer(ev)
            watcher.note_rv(max(self._rv, since or 0))
            table.watchers.add(watcher)
            watcher._on_close = self._forget
        return watcher

    def _forget(self, watcher: Watcher) -> None:
        with self._lock:
            self._tables[watcher.resource].watchers.discard(watcher)

    def close_watchers(self) -> None:
        """End every open watch (server shutdown)."""
        with self._lock:
            watchers = [w for t in self._tables.values() for w in t.watchers]
        for w in watchers:
            w.close()

    def drain_at_version(self, watcher: Watcher) -> tuple[int, list]:
        """The current resourceVersion and everything queued for ``watcher`` up to it (for a bookmark)."""
        with self._lock:
            return self._rv, watcher.take(0) or []

    def watcher_count(self) -> int:
        """How many watches are open."""
        with self._lock:
            return sum(len(t.watchers) for t in self._tables.values())

    # ------------------------------------------------------------------ persistence

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (cheaply, with the lock held) after every write."""
        self._listeners.append(fn)

    def snapshot(self) -> bytes:
        """The whole cluster as JSON bytes: ``{"resourceVersion": N, "objects": {resource: [...]}}``."""
        with self._lock:
            parts = [b'{"resourceVersion":', str(self._rv).encode(), b',"objects":{']
            first = True
            for name, table in self._tables.items():
                if not first:
                    parts.append(b",")
                first = False
                parts.append(b'"' + name.encode() + b'":[')
                parts.append(b",".join(e.raw for e in table.items.values()))
                parts.append(b"]")
            parts.append(b"}}")
            return b"".join(parts)

    def load(self, resource_version: int, objects: dict[str, Iterable[dict[str, Any]]]) -> None:
        """Replace the contents with a snapshot; history starts empty, so older watches get 410."""
        with self._lock:
            for name, table in self._tables.items():
                for obj in objects.get(name, []):
                    meta = obj["metadata"]
                    key = (meta.get("namespace", "") if table.info.namespaced else "", meta["name"])
                    table.put(key, Entry(obj, dumps(obj)), table.items.get(key))
                table.evicted_rv = resource_version
            self._rv = resource_version
