"""Progress lines for long-running commands: one line per step, with how long it took.

A step that waits long says, on lines of its own under it, what it is still waiting for
(:meth:`Step.note`), so a slow step on a busy machine reads as slow, not as stuck.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Step:
    """The step being run: :meth:`note` adds an indented line under it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.noted = False

    def note(self, text: str) -> None:
        """An indented line under the step's line (what it still waits for)."""
        self._stream.write(f"\n    {text}")
        self._stream.flush()
        self.noted = True


class Progress:
    """``with progress.step("starting the API server"): ...`` prints the step, then ``done (0.3s)``."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    @contextmanager
    def step(self, text: str) -> Iterator[Step]:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {text} ..."
        self.stream.write(prefix)
        self.stream.flush()
        began = time.monotonic()
        step = Step(self.stream)
        try:
            yield step
        except BaseException:
            self.stream.write(("\n   " if step.noted else "") + " failed\n")
            self.stream.flush()
            raise
        self.stream.write(("\n   " if step.noted else "") + f" done ({time.monotonic() - began:.1f}s)\n")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started
