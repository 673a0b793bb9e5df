"""A watch as an HTTP/1.1 chunked stream of JSON events, one per line.

The stream ends at ``timeoutSeconds``, when the client goes away, when the watcher overflows, or at
server shutdown. With ``allowWatchBookmarks=true`` a BOOKMARK carrying only the kind and the
current resourceVersion is sent every ``bookmark_interval`` seconds and just before a timeout.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Callable

from tessera.log import get_logger

from .resources import ResourceInfo
from .store import Store
from .tables import table
from .watch import Delivery, Watcher, dumps, event_line

log = get_logger("apiserver")


def bookmark_line(info: ResourceInfo, rv: int, initial_events_end: bool = False) -> bytes:
    """A BOOKMARK event: the object holds only kind, apiVersion and metadata.resourceVersion."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return event_line("BOOKMARK", dumps({"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}))


def client_gone(sock: socket.socket) -> bool:
    """True when the peer has closed its side of the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class ChunkWriter:
    """Writes HTTP chunks to a socket file."""

    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile

    def chunk(self, data: bytes) -> None:
        """One chunk (nothing for empty data)."""
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self) -> None:
        """The terminating zero-length chunk."""
        self.wfile.write(b"0\r\n\r\n")


def _table_lines(info: ResourceInfo, batch: list[Delivery], state: dict[str, bool]) -> bytes:
    out = []
    for d in batch:
        rv = d.obj["metadata"].get("resourceVersion", "")
        t = table(info, [d.obj], {"resourceVersion": rv}, with_columns=not state.get("sent_columns"))
        state["sent_columns"] = True
        out.append(event_line(d.type, dumps(t)))
    return b"".join(out)


def stream_watch(
    writer: ChunkWriter,
    sock: socket.socket,
    store: Store,
    info: ResourceInfo,
    watcher: Watcher,
    timeout: float,
    bookmarks: bool,
    bookmark_interval: float,
    stopping: Callable[[], bool],
    as_table: bool = False,
    initial_events_end: bool = False,
) -> int:
    """Pump ``watcher`` into ``writer`` until done; returns the number of events sent."""
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + bookmark_interval
    sent = 0
    table_state: dict[str, bool] = {}
    try:
        if initial_events_end:
            batch = watcher.take(0) or []
            writer.chunk(_render(info, batch, as_table, table_state))
            sent += len(batch)
            writer.chunk(bookmark_line(info, watcher.last_rv, initial_events_end=True))
        while not stopping():
            now = time.monotonic()
            if now >= deadline:
                break
            batch = watcher.take(min(1.0, deadline - now, max(0.0, next_bookmark - now) if bookmarks else 1.0))
            if batch is None:
                break
            if batch:
                writer.chunk(_render(info, batch, as_table, table_state))
                sent += len(batch)
            elif client_gone(sock):
                break
            if bookmarks and time.monotonic() >= next_bookmark:
                _bookmark(writer, store, info, watcher, as_table, table_state)
                next_bookmark = time.monotonic() + bookmark_interval
        if bookmarks and not stopping() and not watcher.closed:
            _bookmark(writer, store, info, watcher, as_table, table_state)
        writer.end()
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
        log.debug("watch_client_gone", resource=info.name)
        raise
    finally:
        watcher.close()
    return sent


def _render(info: ResourceInfo, batch: list[Delivery], as_table: bool, state: dict[str, bool]) -> bytes:
    if as_table:
        return _table_lines(info, batch, state)
    return b"".join(d.line for d in batch)


def _bookmark(writer: ChunkWriter, store: Store, info: ResourceInfo, watcher: Watcher, as_table: bool,
              state: dict[str, bool]) -> None:
    # Read the version and drain together, so no event at or below it is still on its way.
    rv, pending = store.drain_at_version(watcher)
    if pending:
        writer.chunk(_render(info, pending, as_table, state))
    writer.chunk(bookmark_line(info, rv))
