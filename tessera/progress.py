"""Progress lines for long-running commands: one line per step, with how long it took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """``with progress.step("starting the API server"): ...`` prints the step, then ``done (0.3s)``."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {text} ..."
        self.stream.write(prefix)
        self.stream.flush()
        began = time.monotonic()
        try:
            yield
        except BaseException:
            self.stream.write(" failed\n")
            self.stream.flush()
            raise
        self.stream.write(f" done ({time.monotonic() - began:.1f}s)\n")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started
