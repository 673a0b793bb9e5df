"""Who is calling: the embedded API server's authentication, as a real one does it for bearer tokens.

A request's ``Authorization: Bearer <token>`` names its user. Tokens are issued here for
ServiceAccounts (``service_account_token``): the user is ``system:serviceaccount:<namespace>:<name>``
in the groups ``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and
``system:authenticated``, as the real service-account authenticator says (the tokens are opaque here,
not JWTs). ``add_token`` adds one as a static token file (``--token-auth-file``) would. An unknown
token is refused, 401 Unauthorized. A request without credentials is the cluster's admin, as the
admin's client certificate makes it on a real cluster (the embedded cluster's kubeconfig carries none).
kubectl (client-go) sends a kubeconfig's credentials over TLS only, so to this plain-HTTP server it is
always the admin; the Python client sends its token.

The user of the request being served is ``current_user()``: admission webhooks get it as
``request.userInfo``. Calls made in-process (``Registry`` methods) are the admin's unless made
inside ``acting_as(user)``.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from tessera import service_account_username

from .errors import ApiError


@dataclass(frozen=True)
class UserInfo:
    """An authenticated user, as an AdmissionReview's ``request.userInfo`` carries it."""

    username: str
    groups: tuple[str, ...] = ("system:authenticated",)

    def to_dict(self) -> dict:
        return {"username": self.username, "groups": list(self.groups)}


ADMIN = UserInfo("system:admin", ("system:masters", "system:authenticated"))
_CURRENT: ContextVar[UserInfo] = ContextVar("apiserver_user", default=ADMIN)


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The user a ServiceAccount's token authenticates as."""
    return UserInfo(service_account_username(namespace, name),
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


def current_user() -> UserInfo:
    """The user of the request this thread is serving (the admin outside a request)."""
    return _CURRENT.get()


@contextmanager
def acting_as(user: UserInfo) -> Iterator[UserInfo]:
    """Serve what runs inside as ``user``."""
    token = _CURRENT.set(user)
    try:
        yield user
    finally:
        _CURRENT.reset(token)


def unauthorized() -> ApiError:
    """401, worded as the real server words it."""
    return ApiError(401, "Unauthorized", "Unauthorized")


class TokenAuthenticator:
    """Bearer tokens and the users they name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, UserInfo] = {}

    def add_token(self, token: str, user: UserInfo) -> None:
        """Accept ``token`` as ``user`` from now on."""
        if not token:
            raise ValueError("a bearer token cannot be empty")
        with self._lock:
            self._tokens[token] = user

    def service_account_token(self, namespace: str, name: str) -> str:
        """A new token for the ServiceAccount ``namespace/name``."""
        token = secrets.token_urlsafe(32)
        self.add_token(token, service_account_user(namespace, name))
        return token

    def authenticate(self, authorization: str) -> UserInfo:
        """The user an ``Authorization`` header names (the admin without one); ApiError 401 otherwise."""
        if not authorization:
            return ADMIN
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            user = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise unauthorized()
        return user
