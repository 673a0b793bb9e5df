"""Waking a loop the moment a folder's entries change, through Linux inotify (``inotify_simple``).

The device plugin's registrar polls the kubelet's socket; with this watch beside the poll it sees a
restarted kubelet's new ``kubelet.sock`` as soon as it is made rather than at the next poll (NVIDIA's
device plugin watches the same way). The poll stays: a folder that cannot be watched (no inotify, too
many watches) is only logged, and the loop runs on its poll as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from inotify_simple import INotify, flags

from tessera.log import get_logger

__all__ = ["FolderChanges"]

log = get_logger("dirwatch")

_ENTRY_CHANGES = flags.CREATE | flags.DELETE | flags.MOVED_TO | flags.MOVED_FROM | flags.ATTRIB
_WATCH_GONE = flags.IGNORED | flags.DELETE_SELF
_READ_MS = 500  # how long one read waits; bounds how late stop() is noticed


class FolderChanges:
    """Calls ``on_change`` (from its own thread) after entries of ``folder`` are made, removed or moved."""

    def __init__(self, folder: str, on_change: Callable[[], None], name: str = "dirwatch") -> None:
        self.folder = folder
        self.on_change = on_change
        self._stop = threading.Event()
        self._inotify: INotify | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> bool:
        """Start watching; False (logged) where the folder cannot be watched, and the caller polls alone."""
        try:
            self._inotify = INotify()
            self._inotify.add_watch(self.folder, _ENTRY_CHANGES)
        except OSError as err:
            log.warning("folder_watch_unavailable", folder=self.folder, error=str(err),
                        reason="changes are seen at the next poll instead")
            self._close()
            return False
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * _READ_MS / 1000 + 1)
        self._close()

    def _run(self) -> None:
        assert self._inotify is not None
        while not self._stop.is_set():
            try:
                events = self._inotify.read(timeout=_READ_MS)
            except OSError as err:
                log.warning("folder_watch_failed", folder=self.folder, error=str(err),
                            reason="changes are seen at the next poll instead")
                return
            if not events:
                continue
            self.on_change()
            if any(e.mask & _WATCH_GONE for e in events):  # the folder itself went away: the poll goes on
                log.warning("folder_watch_ended", folder=self.folder, reason="the folder was removed")
                return

    def _close(self) -> None:
        if self._inotify is not None:
            try:
                self._inotify.close()
            except OSError:
                pass
            self._inotify = None
