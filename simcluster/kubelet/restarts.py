"""When the kubelet restarts a container that ended, and how long it waits first.

``restartPolicy`` decides whether: ``Always`` restarts every exit, ``OnFailure`` a non-zero one, ``Never``
none. The back-off decides when, as the real kubelet's (``doBackOff`` and client-go's flowcontrol.Backoff):
the first restart of a container at once, then 10 s, 20 s, 40 s ... up to 5 minutes between restarts,
shown as ``CrashLoopBackOff``; a container that ran without restarting for twice the cap starts over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

INITIAL_BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0


def restart_wanted(restart_policy: str, exit_code: int) -> bool:
    """Whether a container that ended with ``exit_code`` is started again under ``restart_policy``."""
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


@dataclass
class _Entry:
    backoff_s: float
    last_restart: float


class CrashLoopBackOff:
    """Per container: the delay before its next restart."""

    def __init__(self, initial_s: float = INITIAL_BACKOFF_S, cap_s: float = MAX_BACKOFF_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def next_delay(self, key: str) -> float:
        """Seconds to wait before restarting the container ``key`` that just ended (0: at once)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry.last_restart > 2 * self.cap_s:
                self._entries[key] = _Entry(self.initial_s, now)
                return 0.0
            delay = entry.backoff_s
            entry.backoff_s = min(entry.backoff_s * 2, self.cap_s)
            entry.last_restart = now + delay
            return delay

    def forget(self, key_prefix: str) -> None:
        """Drop the entries of a pod that is gone (keys start with its UID)."""
        with self._lock:
            for key in [k for k in self._entries if k.startswith(key_prefix)]:
                del self._entries[key]
