"""How long every Tessera retry loop waits after a failure: jittered exponential backoff with a cap.

Each failure in a row doubles the wait (``base_s``, ``2 * base_s``, ... up to ``cap_s``), and each
wait is drawn at random from its upper ``jitter`` fraction (``jitter=0.5``: between half and all
of it), so a fleet of plugins and exporters that lost the API server together does not come back
in lockstep. A success resets it. One :class:`Backoff` per retry loop::

    retry = Backoff()
    while not stop.is_set():
        try:
            watch()
            retry.reset()
        except Exception:
            retry.wait(stop)        # False: stop was set while waiting

Loops that must not block (a periodic check) ask :meth:`due` instead and record with
:meth:`failed`. The random source and the clock are injectable, so tests need no sleeping.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

API_BASE_S = 0.5   # the API server away: first retry after 0.25-0.5 s
API_CAP_S = 10.0   # ... and never more than 5-10 s apart, however long it is away


class Backoff:
    """The wait before the next try, growing with each failure in a row; see the module docstring."""

    def __init__(self, base_s: float = API_BASE_S, cap_s: float = API_CAP_S, factor: float = 2.0,
                 jitter: float = 0.5, rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got base_s={base_s} cap_s={cap_s}")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError(f"backoff needs factor >= 1 and 0 <= jitter <= 1, got {factor} and {jitter}")
        self.base_s, self.cap_s, self.factor, self.jitter = base_s, cap_s, factor, jitter
        self._rand, self._clock = rand, clock
        self.failures = 0
        self._retry_at = float("-inf")

    def ceiling(self) -> float:
        """The longest the next wait can be: ``base_s * factor**failures``, at most ``cap_s``."""
        # min() before the power overflows: after ~1000 failures factor**n is inf or an OverflowError
        steps = min(self.failures, 64)
        return min(self.cap_s, self.base_s * self.factor ** steps)

    def failed(self) -> float:
        """Count one more failure; returns the wait before the next try (also what :meth:`due` waits)."""
        top = self.ceiling()
        delay = top * (1 - self.jitter * self._rand())
        self.failures += 1
        self._retry_at = self._clock() + delay
        return delay

    def due(self) -> bool:
        """Whether the wait after the last failure is over (always, after a success)."""
        return self._clock() >= self._retry_at

    def reset(self) -> None:
        """A success: the next failure waits ``base_s`` again, and the next try is due now."""
        self.failures = 0
        self._retry_at = float("-inf")

    def wait(self, stop: threading.Event) -> bool:
        """Count a failure and wait its delay; False when ``stop`` is set (at once, or while waiting)."""
        return not stop.wait(self.failed())
