"""Kubernetes resource quantities: ``"500m"``, ``"2"``, ``"1Gi"``, ``"512Mi"``, ``"1e3"``, ``"1.5k"``.

Parsed exactly (as a ``Fraction``), then rounded the way the API machinery rounds: CPU to millicores
and memory to bytes, both upward, as ``Quantity.MilliValue()`` and ``Quantity.Value()`` do.

Bounded as ``k8s.io/apimachinery/pkg/api/resource.Quantity`` is: no quantity is larger than 2^63-1
in magnitude (the API machinery caps it; here it is refused, since no node has that much of
anything), and a non-zero value is rounded up to the nano (``1e-99`` is ``1n``). A huge exponent is
judged by its size before anything is computed (``1e99999999`` took 418 s of CPU when it was
multiplied out), and text longer than any quantity the API server writes is refused before it is
matched. One parser for every quantity Tessera reads: the extender, the webhook, the device plugin,
the embedded kubelet.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
# ASCII digits only, the whole text (no surrounding space, no trailing newline), as ParseQuantity.
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)")


MAX_QUANTITY = 2**63 - 1  # resource.Quantity: "no quantity may represent a number greater than 2^63-1"
MAX_TEXT = 128  # characters; the API server writes quantities in canonical form, a few characters long
_NANO = Fraction(1, 10**9)
_LARGEST_ORDER = 18  # 10**19 > MAX_QUANTITY: a value of decimal order 19 or more is too large


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def _too_large(value: object) -> QuantityError:
    return QuantityError(f"{value!r} is larger than a Kubernetes quantity can be (at most 2^63-1 = {MAX_QUANTITY})")


def _bounded(value: Fraction, given: object) -> Fraction:
    """``value`` within resource.Quantity's bounds: QuantityError above 2^63-1; rounded up (away
    from zero) to the nano otherwise."""
    if abs(value) > MAX_QUANTITY:
        raise _too_large(given)
    if (value * 10**9).denominator != 1:
        nanos = -((-abs(value) * 10**9).__floor__())
        value = Fraction(nanos if value > 0 else -nanos, 10**9)
    return value


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity; numbers (as JSON may carry them) are accepted as they are."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return _bounded(Fraction(value), value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise QuantityError(f"{value!r} is not a quantity")
        return _bounded(Fraction(str(value)), value)
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity")
    return _parse_text(value)


@lru_cache(maxsize=4096)
def _parse_text(value: str) -> Fraction:
    """A quantity string's exact value. Pods repeat a few strings ("4", "500m", "16Gi") in every watch
    event and request, and a Fraction is immutable: each distinct string is parsed once."""
    if len(value) > MAX_TEXT:
        raise QuantityError(f"{value[:24]!r}... ({len(value)} characters) is longer than any Kubernetes quantity")
    match = _QUANTITY.fullmatch(value)
    if not match:
        raise QuantityError(f"{value!r} is not a quantity (expected e.g. 2, 500m, 1.5, 1Gi, 512Mi, 1e3)")
    number, exponent, suffix = match.groups()
    if not exponent:
        suffix = suffix or ""
        return _bounded(Fraction(number) * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]), value)
    whole, _, fraction = number.lstrip("+-").partition(".")
    digits = int(whole + fraction or "0")
    if not digits:
        return Fraction(0)
    power = int(exponent[1:]) - len(fraction)  # value = ±digits * 10**power
    order = len(str(digits)) - 1 + power  # 10**order <= |value| < 10**(order + 1)
    if order > _LARGEST_ORDER:
        raise _too_large(value)
    if order < -10:  # below a nano: rounded up to one, as the API machinery does
        return _NANO if not number.startswith("-") else -_NANO
    return _bounded(Fraction(number) * Fraction(10) ** int(exponent[1:]), value)


def whole_units(value: object) -> int:
    """The count of an extended resource (``nvidia.com/gpu: 2``, ``"1k"``): a whole number, else
    QuantityError (a ValueError)."""
    amount = parse_quantity(value)
    if amount.denominator != 1:
        raise QuantityError(f"{value!r} is not a whole number of units")
    return int(amount)


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
