"""``resource.Quantity`` as the API server handles it: parsed exactly, bounded, and printed canonically.

Parsing follows k8s.io/apimachinery/pkg/api/resource: at most one '.', a decimal (``k``, ``M``, ``m``
...), binary (``Ki``, ``Mi`` ...) or exponent (``e3``) suffix; an exponent beyond int32 is an error,
a value above 2^63-1 is capped there and a non-zero value below 1n rounds up to 1n (so ``1e99999999``
costs nothing to read). Printing is ``Quantity.String()``: the largest suffix of the quantity's own
format that keeps an integer mantissa (``1536Mi``, ``1k``, ``500m``, ``1e3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX = Fraction(2**63 - 1)
NANO = Fraction(1, 10**9)
REGEX_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_SYNTAX = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")
_BINARY = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_DECIMAL_EXPONENT = {suffix: exp for exp, suffix in _DECIMAL.items()}
_INT32 = 2**31


class QuantityError(ValueError):
    """Text that is not a quantity (the message is the API server's)."""


@dataclass(frozen=True)
class Quantity:
    """An exact amount and the format it prints in: ``DecimalSI``, ``BinarySI`` or ``DecimalExponent``."""

    value: Fraction
    format: str = "DecimalSI"

    def __add__(self, other: Quantity) -> Quantity:
        """The sum, in this quantity's format (as ``Quantity.Add``), capped at 2^63-1."""
        return Quantity(_bounded(self.value + other.value), self.format)

    def __str__(self) -> str:
        return canonical(self)


ZERO = Quantity(Fraction(0))


def parse(text: object) -> Quantity:
    """A quantity from JSON (a string, or a number as YAML writes ``4``); ``QuantityError`` if not one."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise QuantityError(REGEX_MESSAGE)
    match = _SYNTAX.match(text if isinstance(text, str) else str(text))
    if not match:
        raise QuantityError(REGEX_MESSAGE)
    sign, number, exponent, suffix = match.groups()
    amount = Fraction(number)
    if exponent is not None:
        power, fmt = int(exponent), "DecimalExponent"
        if not -_INT32 <= power < _INT32:
            raise QuantityError("unable to parse numeric part of quantity")
        value = _scaled(amount, power)
    elif suffix in _BINARY and suffix:
        value, fmt = amount * 1024 ** _BINARY.index(suffix), "BinarySI"
    else:
        value, fmt = amount * Fraction(10) ** _DECIMAL_EXPONENT[suffix or ""], "DecimalSI"
    return Quantity(_bounded(-value if sign == "-" else value), fmt)


def _scaled(amount: Fraction, power: int) -> Fraction:
    """``amount * 10**power`` without building a huge power: past the cap or below a nano it is
    already known what the bounds make of it."""
    if amount == 0:
        return amount
    if power > 40:
        return MAX
    if power < -40:
        return NANO
    return amount * Fraction(10) ** power


def _bounded(value: Fraction) -> Fraction:
    magnitude = abs(value)
    if magnitude > MAX:
        magnitude = MAX
    elif magnitude and magnitude.denominator != 1:
        nanos = -((-magnitude.numerator * 10**9) // magnitude.denominator)  # round up to a whole nano
        magnitude = Fraction(nanos, 10**9)
    return -magnitude if value < 0 else magnitude


def canonical(q: Quantity) -> str:
    """``Quantity.String()``."""
    value = q.value
    if value == 0:
        return "0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if q.format == "BinarySI" and value >= 1024 and value.denominator == 1:
        number, step = int(value), 0
        while number % 1024 == 0 and step < len(_BINARY) - 1:
            number, step = number // 1024, step + 1
        return f"{sign}{number}{_BINARY[step]}"
    exponent = -9
    while exponent < 18 and (value / Fraction(10) ** (exponent + 3)).denominator == 1:
        exponent += 3
    mantissa = int(value / Fraction(10) ** exponent)
    if q.format == "DecimalExponent":
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    return f"{sign}{mantissa}{_DECIMAL[exponent]}"
