"""Time as the API server writes it: metav1.Time, RFC 3339 in UTC with whole seconds."""

from __future__ import annotations

import time


def now_rfc3339(offset: float = 0.0) -> str:
    """Now (plus ``offset`` seconds) as a metav1.Time string."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))
