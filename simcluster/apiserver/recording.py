"""An optional record of the requests the API server receives: who asked (the bearer token of the
client's kubeconfig), the method, the path and the query. Off unless ``ApiServer.recorder`` is set;
tests use it to compare the calls each daemon makes with the RBAC rules deploy/ grants it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApiRequest:
    """One request as it reached the server."""

    user: str  # the bearer token ("" without one)
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)


class RequestRecorder:
    """Thread-safe list of :class:`ApiRequest`; the server calls it once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ApiRequest] = []

    def __call__(self, method: str, path: str, query: dict[str, str], authorization: str) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        user = token.strip() if scheme.lower() == "bearer" else ""
        with self._lock:
            self._requests.append(ApiRequest(user, method, path, dict(query)))

    def requests(self, user: str | None = None) -> list[ApiRequest]:
        """Every request so far, or only those of ``user``."""
        with self._lock:
            return [r for r in self._requests if user is None or r.user == user]
