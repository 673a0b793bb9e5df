"""Waiting for what the embedded cluster started, for as long as it lives and progresses.

A fixed deadline tuned on a quiet machine fails a busy one: under load each device plugin took about
25 s just to import, past the demo's 30 s wait. So :func:`wait_ready` has no deadline. It ends when
every awaited thing is ready, or at once when an awaited process has ended (the failure names it and
the log to read), or when one made no progress at all for ``stall_s`` (a hang guard of minutes, far
past a slow import). An awaited thing progresses while its log grows or the phase it reports changes
(a node's resources appearing, a pod's status moving). CPU time is no sign of progress: a daemon's
own loops use some while it waits for something that never comes.

    wait_ready([Awaited("the device plugin of node a", ready=registered, proc=proc, log=log)],
               "every node's Tessera resources")
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

STALL_S = 300.0          # no progress at all for this long: hung, whatever the machine's load
REPORT_EVERY_S = 10.0    # how often a long wait says what it still waits for


class NotReady(RuntimeError):
    """What was awaited cannot become ready; the message is one line naming it and the log to read."""


@dataclass
class Awaited:
    """One thing a wait is for: ``ready`` says whether it is; its process, log and phase show progress."""

    name: str                                    # what a user reads: "the device plugin of node a100-mps"
    ready: Callable[[], object]                  # truthy once ready
    proc: subprocess.Popen | None = None         # its process, where it is one of its own
    log: Path | None = None                      # the file to read when it fails
    phase: Callable[[], object] | None = None    # what it reports on the way (a change is progress)
    task: str = ""                               # what it is awaited for, where not the wait's own ``what``

    def is_ready(self) -> bool:
        """``ready()``, where a daemon that cannot be reached yet (OSError) is not ready."""
        try:
            return bool(self.ready())
        except OSError:
            return False

    def progress_mark(self) -> tuple:
        """What changes while it progresses: its log's size and its phase (None while it cannot be read)."""
        try:
            phase = self.phase() if self.phase else None
        except OSError:
            phase = None
        return (_size(self.log), phase)

    def where(self) -> str:
        return f"; read {self.log}" if self.log else ""


@dataclass
class _Watch:
    mark: tuple
    since: float


def wait_ready(awaited: Sequence[Awaited], what: str, *, stall_s: float = STALL_S, interval_s: float = 0.1,
               report: Callable[[str], None] | None = None, report_every_s: float = REPORT_EVERY_S,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until every awaited thing is ready; :class:`NotReady` at once when one's process has ended, or when
    one made no progress for ``stall_s``. ``report`` gets a line saying what is still awaited, every
    ``report_every_s`` while the wait lasts."""
    began = clock()
    watches: dict[int, _Watch] = {}
    pending = list(awaited)
    reported = began
    while True:
        now = clock()
        still = []
        for item in pending:
            if item.is_ready():
                continue
            task = item.task or what
            if item.proc is not None and item.proc.poll() is not None:
                raise NotReady(f"{item.name} exited with status {item.proc.returncode} before {task}{item.where()}")
            mark = item.progress_mark()
            watch = watches.get(id(item))
            if watch is None or watch.mark != mark:
                watches[id(item)] = _Watch(mark, now)
            elif now - watch.since >= stall_s:
                raise NotReady(f"{item.name} made no progress for {now - watch.since:.0f} s (still running, "
                               f"its log and status unchanged) before {task}{item.where()}")
            still.append(item)
        pending = still
        if not pending:
            return
        if report and now - reported >= report_every_s:
            reported = now
            report(f"{now - began:.0f}s: waiting for {_names(pending)}")
        sleep(interval_s)


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 (a daemon's /healthz or /-/ready); False while it cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _names(items: Sequence[Awaited]) -> str:
    shown = ", ".join(item.name for item in items[:4])
    return shown + (f" and {len(items) - 4} more" if len(items) > 4 else "")


def _size(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path else None
    except OSError:
        return None
