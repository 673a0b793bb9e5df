"""Watchers: one queue per watch, filled by the store under its lock, drained by one HTTP thread.

A store event is serialized once (``line``); a watcher whose selector sees the object enter or
leave its view gets the ADDED / DELETED the real watch cache sends instead of MODIFIED.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from tessera.log import get_logger

log = get_logger("apiserver")


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, the one serializer of the server."""
    return orjson.dumps(obj)


def event_line(event_type: str, raw: bytes) -> bytes:
    """One watch event as sent on the wire, newline-terminated."""
    return b'{"type":"' + event_type.encode() + b'","object":' + raw + b"}\n"


@dataclass(slots=True)
class StoreEvent:
    """What happened to one object, with its serialized line."""

    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    namespace: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    raw: bytes
    line: bytes


@dataclass(slots=True)
class Delivery:
    """One event as a given watcher sees it."""

    type: str
    obj: dict[str, Any]
    line: bytes


class Watcher:
    """A single watch: its filters and its queue."""

    def __init__(
        self,
        resource: str,
        namespace: str | None,
        matcher: Callable[[dict[str, Any]], bool] | None,
        max_queue: int = 200_000,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.matcher = matcher
        self.max_queue = max_queue
        self.last_rv = 0
        self.closed = False
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._on_close: Callable[[Watcher], None] | None = None

    def _passes(self, ns: str, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and ns != self.namespace:
            return False
        return self.matcher is None or self.matcher(obj)

    def offer(self, ev: StoreEvent) -> None:
        """Queue ``ev`` if this watch sees it (called with the store's lock held)."""
        if self.closed:
            return
        if self.namespace is not None and ev.namespace != self.namespace:
            return
        if self.matcher is None:
            self._push(Delivery(ev.type, ev.obj, ev.line), ev.rv)
            return
        cur = self.matcher(ev.obj)
        if ev.type != "MODIFIED":
            if cur:
                self._push(Delivery(ev.type, ev.obj, ev.line), ev.rv)
            return
        old = ev.prev is not None and self.matcher(ev.prev)
        if cur:
            kind = "MODIFIED" if old else "ADDED"
            line = ev.line if old else event_line("ADDED", ev.raw)
            self._push(Delivery(kind, ev.obj, line), ev.rv)
        elif old and ev.prev is not None:
            gone = dict(ev.prev)
            gone["metadata"] = dict(gone["metadata"], resourceVersion=str(ev.rv))
            self._push(Delivery("DELETED", gone, event_line("DELETED", dumps(gone))), ev.rv)

    def push_initial(self, obj: dict[str, Any], raw: bytes, rv: int) -> None:
        """A synthetic ADDED for the initial state (called with the store's lock held)."""
        self._push(Delivery("ADDED", obj, event_line("ADDED", raw)), rv)

    def _push(self, delivery: Delivery, rv: int) -> None:
        with self._cond:
            if len(self._queue) >= self.max_queue:
                self.closed = True
                log.warning("watch_overflow", resource=self.resource, queued=len(self._queue))
                self._cond.notify_all()
                return
            self._queue.append(delivery)
            self.last_rv = max(self.last_rv, rv)
            self._cond.notify()

    def take(self, timeout: float) -> list[Delivery] | None:
        """Everything queued, waiting up to ``timeout`` for the first; None once closed and drained."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            if self._queue:
                out = list(self._queue)
                self._queue.clear()
                return out
            return None if self.closed else []

    def note_rv(self, rv: int) -> None:
        """Record the store's version when nothing matching has happened (for bookmarks)."""
        with self._cond:
            self.last_rv = max(self.last_rv, rv)

    def close(self) -> None:
        """Stop this watch: the stream ends once its queue is drained."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)
