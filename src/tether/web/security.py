"""Who is calling: API keys for apps and admins, the admin session, CSRF tokens.

API keys (``tk_<id>_<secret>``) are hashed with SHA-256 before lookup; only hashes are
stored (``store/apikeys.py``) and the found hash is compared again in constant time.

An ``app`` key acts for the end user it names in ``X-Tether-User``. Users are namespaced
by the key's application (``<app>/<user>``), so one app can never reach another app's
users' connections, whatever user id it sends. An ``admin`` key (or the admin session)
may act for any user id as stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import Depends, Header, Request

from tether.errors import Forbidden, Unauthenticated, ValidationFailed
from tether.hub.tether import Tether
from tether.store.apikeys import ApiKey, ApiKeyRole

__all__ = [
    "CurrentPrincipal",
    "Principal",
    "authenticate_key",
    "csrf_token",
    "get_tether",
    "hash_key",
    "issue_key",
    "require_admin",
]

USER_HEADER: Final = "X-Tether-User"
_APP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_MAX_USER = 200


def get_tether(request: Request) -> Tether:
    """The service's :class:`Tether` (built by the lifespan)."""
    tether: Tether = request.app.state.tether
    return tether


TetherDep = Annotated[Tether, Depends(get_tether)]


def hash_key(key: str) -> str:
    """Hex SHA-256 of an API key (the key has 256 random bits; no salt needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def issue_key(
    tether: Tether, name: str, role: ApiKeyRole, *, app: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the key, which is never shown again.

    Raises:
        ValidationFailed: Bad name or app, or the name is taken.
    """
    name = name.strip()
    fields: dict[str, str] = {}
    if not _APP_NAME.match(name):
        fields["name"] = "1-100 letters, digits, '.', '_' or '-'"
    if role == "app":
        app = (app or name).strip()
        if not _APP_NAME.match(app):
            fields["app"] = "1-100 letters, digits, '.', '_' or '-'"
    else:
        app = None
    if fields:
        raise ValidationFailed("the API key is invalid", fields=fields)
    key_id = uuid.uuid4().hex[:12]
    key = f"tk_{key_id}_{secrets.token_urlsafe(32)}"
    record = await tether.stores.api_keys.add(
        ApiKey(id=key_id, name=name, role=role, key_hash=hash_key(key), app=app)
    )
    return record, key


async def authenticate_key(tether: Tether, key: str) -> ApiKey:
    """The live record of ``key``.

    Raises:
        Unauthenticated: Unknown or revoked key.
    """
    digest = hash_key(key)
    record = await tether.stores.api_keys.get_by_hash(digest)
    if record is None or not hmac.compare_digest(record.key_hash, digest):
        raise Unauthenticated("the API key is not valid", hint="check the key")
    if record.revoked_at is not None:
        raise Unauthenticated("the API key was revoked", hint="create a new key")
    return record


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    Attributes:
        role: ``admin`` or ``app``.
        name: The key's name (``session`` for a signed-in admin's key name).
        app: The application namespace of an ``app`` key.
        user_header: The raw ``X-Tether-User`` value, if any.
    """

    role: Literal["admin", "app"]
    name: str
    app: str | None
    user_header: str | None

    @property
    def actor(self) -> str:
        """Who the audit log names."""
        return f"{self.role}:{self.name}"

    def user(self, requested: str | None = None) -> str | None:
        """The hub user id this caller acts for.

        Args:
            requested: A user id from the request body or query (admins only; an app
                names its user in the header).

        Raises:
            Forbidden: An app key that names no user, or names one outside its header.
        """
        raw = requested if requested is not None else self.user_header
        if raw is not None and (not raw.strip() or len(raw) > _MAX_USER):
            raise ValidationFailed(
                "the user id must be 1-200 characters", fields={"user": "invalid"}
            )
        if self.role == "admin":
            return raw
        if requested is not None and requested != self.user_header:
            raise Forbidden(
                "an app key acts only for the user in its X-Tether-User header"
            )
        if raw is None:
            return None
        return f"{self.app}/{raw}"

    def require_user(self, requested: str | None = None) -> str | None:
        """Like :meth:`user`, but an app key must name one."""
        user = self.user(requested)
        if self.role == "app" and user is None:
            raise Forbidden(
                "an app key must name the user it acts for",
                hint=f"send the {USER_HEADER} header",
            )
        return user


async def current_principal(
    request: Request,
    tether: TetherDep,
    authorization: Annotated[str | None, Header()] = None,
    x_tether_user: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate the request: ``Authorization: Bearer <key>`` or the admin session.

    Raises:
        Unauthenticated: No credentials, or a bad key.
    """
    if authorization:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
        record = await authenticate_key(tether, key.strip())
        return Principal(record.role, record.name, record.app, x_tether_user)
    session_key = (
        request.session.get("admin_key") if "session" in request.scope else None
    )
    if session_key:
        found = await tether.stores.api_keys.get(str(session_key))
        if found is not None and found.revoked_at is None and found.role == "admin":
            return Principal("admin", found.name, None, x_tether_user)
    raise Unauthenticated("an API key is required", hint="send Authorization: Bearer")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: CurrentPrincipal) -> Principal:
    """Only admins pass.

    Raises:
        Forbidden: An app key.
    """
    if principal.role != "admin":
        raise Forbidden("this needs an admin API key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form whose token is not the session's.

    Raises:
        Forbidden: Missing or wrong token.
    """
    expected = request.session.get("csrf")
    if (
        not isinstance(expected, str)
        or not submitted
        or not hmac.compare_digest(expected, submitted)
    ):
        raise Forbidden(
            "the form's security token is missing or stale",
            hint="reload the page and submit again",
        )
