"""Label and field selectors: the grammar of k8s.io/apimachinery/pkg/labels and pkg/fields.

``parse_labels("app=web,tier in (a,b),!canary")`` and ``parse_fields("spec.nodeName=n1")`` return
selectors with ``matches(obj)``; a malformed selector raises ``ApiError`` 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ApiError, bad_request

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_OPERATORS = ("==", "!=", "=", "in", "notin", ">", "<")


def _label_error(detail: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {detail}")


def validate_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid qualified label key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return f'Invalid value: "{key}": prefix part must be non-empty'
    if prefix and (len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        return f'Invalid value: "{key}": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters'
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return (
            f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\', '
            "and must start and end with an alphanumeric character"
        )
    return None


def validate_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None."""
    if len(value) > 63:
        return f'Invalid value: "{value}": must be no more than 63 characters'
    if not _VALUE_RE.match(value):
        return (
            f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    op: str  # exists, !exists, =, !=, in, notin, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a label set satisfies this term."""
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!exists":
            return self.key not in labels
        if op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if self.key not in labels:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(next(iter(self.values)))
        return have > want if op == "gt" else have < want


class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        """Whether these labels satisfy every requirement."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise _label_error(f"unexpected character at {pos} in {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_labels(text: str | None) -> LabelSelector:
    """Parse a label selector string; raise a 400 ``ApiError`` when malformed."""
    if not text or not text.strip():
        return LabelSelector([])
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise _label_error(f"found '{toks[i] if i < len(toks) else 'EOS'}', expected: {what}")

    while i < len(toks):
        negate = toks[i] == "!"
        if negate:
            i += 1
        need(i < len(toks) and toks[i] not in ("=", "==", "!=", "(", ")", ",", "!", ">", "<"), "identifier")
        key = toks[i]
        why = validate_label_key(key)
        if why:
            raise _label_error(f"key: {why}")
        i += 1
        if negate:
            need(i == len(toks) or toks[i] == ",", "',' or 'end of string'")
            reqs.append(Requirement(key, "!exists"))
        elif i == len(toks) or toks[i] == ",":
            reqs.append(Requirement(key, "exists"))
        else:
            op = toks[i]
            need(op in _OPERATORS, "'=', '!=', '==', 'in', notin'")
            i += 1
            if op in ("in", "notin"):
                need(i < len(toks) and toks[i] == "(", "'('")
                i += 1
                values: list[str] = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] == ",":
                        i += 1
                        continue
                    values.append(toks[i])
                    i += 1
                need(i < len(toks), "')'")
                i += 1
                if not values and op == "in":
                    raise _label_error("for 'in', 'notin' operators, values set can't be empty")
            else:
                if i < len(toks) and toks[i] not in (",",):
                    values = [toks[i]]
                    i += 1
                else:
                    values = [""]
                if op in (">", "<"):
                    try:
                        int(values[0])
                    except ValueError:
                        raise _label_error("for 'Gt', 'Lt' operators, the value must be an integer") from None
            for v in values:
                why = validate_label_value(v)
                if why:
                    raise _label_error(f"values[0][{key}]: {why}")
            mapped = {"==": "=", ">": "gt", "<": "lt"}.get(op, op)
            reqs.append(Requirement(key, mapped, frozenset(values)))
        if i < len(toks):
            need(toks[i] == ",", "','")
            i += 1
            need(i < len(toks), "identifier")
    return LabelSelector(reqs)


def from_label_selector_object(sel: dict[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels / matchExpressions) as a selector; None matches all."""
    if not sel:
        return LabelSelector([])
    reqs = [Requirement(k, "=", frozenset([v])) for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(expr.get("operator"))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr.get("key", ""), op, frozenset(expr.get("values") or [])))
    return LabelSelector(reqs)


# ---------------------------------------------------------------- field selectors


@dataclass(frozen=True)
class FieldTerm:
    """One ``field=value`` / ``field!=value`` term."""

    field: str
    negate: bool
    value: str


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a selectable field of ``obj`` ("" when absent), as the real server indexes it."""
    if path == "source":  # events: source is source.component
        return str((obj.get("source") or {}).get("component", ""))
    if path == "status.podIPs":
        path = "status.podIP"
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


class FieldSelector:
    """A parsed field selector; the empty selector matches everything."""

    def __init__(self, terms: list[FieldTerm]) -> None:
        self.terms = terms

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.terms

    def matches(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` satisfies every term."""
        for t in self.terms:
            if (field_value(obj, t.field) == t.value) == t.negate:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value an ``=`` term requires for ``field`` (for index lookups), or None."""
        for t in self.terms:
            if t.field == field and not t.negate:
                return t.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(text: str | None, allowed: tuple[str, ...] | None = None) -> FieldSelector:
    """Parse a field selector; raise 400 on bad syntax or on a field the kind does not index."""
    if not text or not text.strip():
        return FieldSelector([])
    terms: list[FieldTerm] = []
    for part in _split_unescaped(text, ","):
        m = re.match(r"^((?:[^\\=!]|\\.)+?)\s*(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = _unescape(m.group(1).strip()), m.group(2), _unescape(m.group(3))
        if allowed is not None and field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        terms.append(FieldTerm(field, op == "!=", value))
    return FieldSelector(terms)


Matcher = Callable[[dict[str, Any]], bool]


def object_matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher | None:
    """One predicate over whole objects for both selectors; None when both are empty."""
    if labels.empty() and fields.empty():
        return None
    if fields.empty():
        return lambda obj: labels.matches(obj.get("metadata", {}).get("labels"))
    if labels.empty():
        return fields.matches
    return lambda obj: labels.matches(obj.get("metadata", {}).get("labels")) and fields.matches(obj)
