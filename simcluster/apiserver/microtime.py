"""``metav1.MicroTime`` as kube-apiserver reads it: RFC 3339 with exactly six fraction digits
(``2006-01-02T15:04:05.000000Z07:00``), refused with Go's ``time.Parse`` wording otherwise. Leases'
``acquireTime``/``renewTime`` and Events' ``eventTime`` are MicroTimes: a client that writes them
without the microseconds is refused by the real API server, so it is here too."""

from __future__ import annotations

import re

LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

# Go's layout, chunk by chunk: (literal prefix, layout element, its pattern, the range it must be in).
_CHUNKS: tuple[tuple[str, str, str, tuple[int, int, str] | None], ...] = (
    ("", "2006", r"\d{4}", None),
    ("-", "01", r"\d{2}", (1, 12, "month")),
    ("-", "02", r"\d{2}", (1, 31, "day")),
    ("T", "15", r"\d{2}", (0, 23, "hour")),
    (":", "04", r"\d{2}", (0, 59, "minute")),
    (":", "05", r"\d{2}", (0, 59, "second")),
    ("", ".000000", r"[.,]\d{6}", None),
    ("", "Z07:00", r"Z|[+-]\d{2}:\d{2}", None),
)

# The MicroTime fields of the kinds served here: resource -> dotted paths.
MICROTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "leases": ("spec.acquireTime", "spec.renewTime"),
    "events": ("eventTime", "series.lastObservedTime"),
}


def parse_error(value: str) -> str | None:
    """Why ``value`` is not a MicroTime, worded as Go's ``time.Parse`` words it; None when it is one."""
    rest = value
    for prefix, element, pattern, bounds in _CHUNKS:
        if not rest.startswith(prefix):
            return f'parsing time "{value}" as "{LAYOUT}": cannot parse "{rest}" as "{prefix}"'
        rest = rest[len(prefix):]
        match = re.match(pattern, rest)
        if match is None:
            return f'parsing time "{value}" as "{LAYOUT}": cannot parse "{rest}" as "{element}"'
        if bounds is not None and not bounds[0] <= int(match.group()) <= bounds[1]:
            return f'parsing time "{value}": {bounds[2]} out of range'
        rest = rest[match.end():]
    if rest:
        return f'parsing time "{value}": extra text: "{rest}"'
    return None
