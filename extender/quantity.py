"""Kubernetes resource quantities: ``"500m"``, ``"2"``, ``"1Gi"``, ``"512Mi"``, ``"1e3"``, ``"1.5k"``.

Parsed exactly (as a ``Fraction``), then rounded the way the API machinery rounds: CPU to millicores
and memory to bytes, both upward, as ``Quantity.MilliValue()`` and ``Quantity.Value()`` do.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity; numbers (as JSON may carry them) are accepted as they are."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity")
    return _parse_text(value)


@lru_cache(maxsize=4096)
def _parse_text(value: str) -> Fraction:
    """A quantity string's exact value. Pods repeat a few strings ("4", "500m", "16Gi") in every watch
    event and request, and a Fraction is immutable: each distinct string is parsed once."""
    match = _QUANTITY.match(value.strip())
    if not match:
        raise QuantityError(f"{value!r} is not a quantity (expected e.g. 2, 500m, 1.5, 1Gi, 512Mi, 1e3)")
    number, exponent, suffix = match.groups()
    amount = Fraction(number)
    if exponent:
        return amount * Fraction(10) ** int(exponent[1:])
    suffix = suffix or ""
    return amount * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def cpu_millis(value: object) -> int:
    """CPU in millicores, rounded up (``"0.1"`` -> 100, ``"1"`` -> 1000)."""
    if isinstance(value, str):
        return _millis_text(value)
    return _ceil(parse_quantity(value) * 1000)


def memory_bytes(value: object) -> int:
    """Memory in bytes, rounded up (``"1Gi"`` -> 1073741824, ``"1e3"`` -> 1000)."""
    if isinstance(value, str):
        return _bytes_text(value)
    return _ceil(parse_quantity(value))


@lru_cache(maxsize=4096)
def _millis_text(value: str) -> int:
    return _ceil(_parse_text(value) * 1000)


@lru_cache(maxsize=4096)
def _bytes_text(value: str) -> int:
    return _ceil(_parse_text(value))
