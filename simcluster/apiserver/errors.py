"""API errors as the real API server words them: every failure leaves as a ``Status`` object.

``ApiError`` carries the HTTP code, the ``reason`` (``NotFound``, ``Conflict``, ...), the message
and the ``details``; ``status()`` renders the ``meta/v1 Status`` document. The constructors below
reproduce the messages of k8s.io/apimachinery/pkg/api/errors so clients that match on them work.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request that failed, with what the real server would answer."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def success_status(code: int = 201) -> dict[str, Any]:
    """The ``Status`` a subresource such as ``pods/binding`` or ``pods/eviction`` answers on success."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def _details(resource: str, name: str, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """404: the named object does not exist."""
    return ApiError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', _details(resource, name, group))


def path_not_found() -> ApiError:
    """404 for a path the server does not serve at all."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    """409 AlreadyExists: a create of a name that is taken."""
    return ApiError(
        409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists', _details(resource, name, group)
    )


def conflict(resource: str, name: str, why: str, group: str = "") -> ApiError:
    """409 Conflict with the real wording (``Operation cannot be fulfilled on ...``)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(resource, name, group),
    )


STALE_WRITE = "the object has been modified; please apply your changes to the latest version and try again"


def stale(resource: str, name: str, group: str = "") -> ApiError:
    """409 for a write whose resourceVersion is not the stored one."""
    return conflict(resource, name, STALE_WRITE, group)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    """405 for a verb the resource does not support."""
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """415 for a body in a format the endpoint cannot read (no details, as apiserver's negotiation words it)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    """406 for an Accept header naming no media type the endpoint can answer in."""
    return ApiError(406, "NotAcceptable", f"only the following media types are accepted: {', '.join(accepted)}", {})


def too_large() -> ApiError:
    """413 for a body over the size limit."""
    return ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728", {})


def gone(message: str) -> ApiError:
    """410 Expired: a resourceVersion older than the kept history."""
    return ApiError(410, "Expired", message)


def forbidden(resource: str, name: str, why: str, group: str = "") -> ApiError:
    """403 Forbidden with the real wording."""
    return ApiError(
        403, "Forbidden", f'{_qualified(resource, group)} "{name}" is forbidden: {why}', _details(resource, name, group)
    )


def internal(message: str, causes: list[dict[str, str]] | None = None) -> ApiError:
    """500 InternalError (``Internal error occurred: ...``)."""
    details: dict[str, Any] = {"causes": causes or [{"message": message}]}
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", details)


class FieldError:
    """One invalid field, as in k8s.io/apimachinery/pkg/util/validation/field."""

    REASONS = {
        "Required": "FieldValueRequired",
        "Invalid": "FieldValueInvalid",
        "Forbidden": "FieldValueForbidden",
        "Duplicate": "FieldValueDuplicate",
        "Unsupported": "FieldValueNotSupported",
        "TooLong": "FieldValueTooLong",
    }

    def __init__(self, kind: str, field: str, detail: str = "", value: Any = None) -> None:
        self.kind = kind
        self.field = field
        self.detail = detail
        self.value = value

    def message(self) -> str:
        """The cause message without the field (``Required value``, ``Invalid value: "x": ...``)."""
        if self.kind == "Required":
            head = "Required value"
        elif self.kind == "Forbidden":
            head = "Forbidden"
        elif self.kind == "Duplicate":
            head = f"Duplicate value: {_quote(self.value)}"
        elif self.kind == "Unsupported":
            head = f"Unsupported value: {_quote(self.value)}"
        else:
            head = f"Invalid value: {_quote(self.value)}"
        return f"{head}: {self.detail}" if self.detail else head

    def cause(self) -> dict[str, str]:
        """The ``details.causes`` entry."""
        return {"reason": self.REASONS[self.kind], "message": self.message(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message()}"


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> ApiError:
    """422 Invalid: ``Pod "x" is invalid: spec.containers: Required value`` with causes."""
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)
