"""Token requests and responses: code exchange, refresh, client credentials.

RFC 6749 §4.1.3, §4.4.2, §5.1, §5.2, §6; RFC 7636 §4.5; RFC 8707 §2.2; RFC 6750 §4;
requirements.md TOK-1, TOK-4, TOK-5, RFR-3, RFR-4, RFR-7, SCP-12.

Builders return a :class:`~tether.oauth.client_auth.FormPost` for the hub to send;
:func:`parse_token_response` turns the answer into a :class:`TokenSet` with an absolute
``expires_at`` (``now`` is passed in). A code exchange replaces the whole token set; only
a refresh carries the current connection's refresh token forward (G-11), via
:func:`merge_refreshed`.

Tolerance (TOK-4, *Known disagreements* #12): JSON or form-encoded bodies, an ``error``
member even with HTTP 200 (Slack answers a failed refresh ``200 {"ok": false, "error":
...}``), any ``error`` code, standard or not, ``token_type`` in any case, ``expires_in`` as a
numeric string.

Hostile values (issue: zero raw exceptions) end as :class:`~tether.errors.InvalidResponse`:

- ``expires_in`` (RFC 6749 §5.1, "the lifetime in seconds"): a non-negative integer, as a
  JSON number or a string of ASCII digits. A lifetime longer than
  :data:`MAX_EXPIRES_IN` (one year) is clamped to it, so ``1e17`` or
  ``"99999999999999999999"`` means "a year" instead of overflowing a datetime; the token
  is then refreshed after a year at the latest, which costs nothing. Absent, ``null`` or
  ``""`` is an unknown lifetime. Negative, fractional, non-finite (``1e309`` decodes to
  infinity), boolean or other values are refused: the AS is broken, and guessing a
  lifetime would either hammer it or keep a dead token.
- ``access_token`` and ``refresh_token`` must be 1 to :data:`MAX_TOKEN_LENGTH` visible
  ASCII characters, no space (RFC 6749 Appendix A.12, A.17: ``1*VSCHAR``). RFC 6750 §2.1's
  ``b64token`` is stricter, but deployed servers issue ``!`` (Salesforce) and similar;
  what matters is that a token never carries CR/LF, spaces, controls or non-ASCII into an
  ``Authorization`` header, and never fills the store. The error never quotes the token.
``token_type`` ``DPoP`` (RFC 9449 §5) is accepted only when the request carried a DPoP
proof (``dpop=True``); other non-Bearer types are refused. Left out: ID token
validation (the ``id_token`` member is ignored).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, SecretStr

from tether.errors import (
    ConfigurationError,
    InvalidResponse,
    OAuthError,
    RemoteError,
    UsageError,
)
from tether.oauth._wire import decode_form_or_json, first_str
from tether.oauth.client_auth import ClientAuth, FormPost
from tether.oauth.params import merge_params

__all__ = [
    "FORM_HEADERS",
    "MAX_EXPIRES_IN",
    "MAX_TOKEN_LENGTH",
    "TokenSet",
    "authorization_code_request",
    "client_credentials_request",
    "merge_refreshed",
    "parse_token_response",
    "raise_for_oauth_error",
    "refresh_request",
    "require_refresh_token",
]

FORM_HEADERS: Mapping[str, str] = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded",
}
"""Headers of every token and revocation POST (TOK-4: ask for JSON)."""

MAX_EXPIRES_IN: Final = 366 * 24 * 3600
"""Longest lifetime believed, in seconds (one year); longer ``expires_in`` is clamped."""

MAX_TOKEN_LENGTH: Final = 16 * 1024
"""Longest access or refresh token accepted, in characters (16 KiB).

Large JWTs with many claims stay well under 8 KiB; servers commonly refuse request
headers above 8–16 KiB, so a longer token could never be used anyway."""

# RFC 6749 Appendix A: VSCHAR = %x20-7E; the space is left out, since it would split
# the ``Authorization: Bearer`` header (RFC 6750 §2.1).
_VSCHAR: Final = re.compile(r"[\x21-\x7e]+")
_DIGITS: Final = re.compile(r"[0-9]+")


class TokenSet(BaseModel):
    """The tokens of one grant, with an absolute expiry (RFC 6749 §5.1).

    Attributes:
        access_token: The access token (masked).
        token_type: ``"Bearer"`` (RFC 6750), or ``"DPoP"`` for a token bound to the
            proof key of the request (RFC 9449 §5); other types are refused.
        refresh_token: The refresh token, if any (masked).
        expires_at: ``now + expires_in``; ``None`` when the AS gave no lifetime.
        scopes: Granted scopes: the response's ``scope``, else those requested (SCP-12).
    """

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()


def _form(
    token_endpoint: str,
    defaults: dict[str, str],
    *,
    resource: str | None,
    auth: ClientAuth,
    custom_params: Mapping[str, str | None] | None,
) -> FormPost:
    if resource is not None:
        defaults["resource"] = resource  # RFC 8707 §2.2 (RES-1)
    body = merge_params(defaults, custom_params, kind="token")
    body.update(auth.body)  # client_id/client_secret are protected keys
    return FormPost(
        url=token_endpoint, body=body, headers={**FORM_HEADERS, **auth.headers}
    )


def authorization_code_request(
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    resource: str | None,
    auth: ClientAuth,
    custom_params: Mapping[str, str | None] | None = None,
) -> FormPost:
    """Build the code exchange (RFC 6749 §4.1.3, RFC 7636 §4.5, RFC 8707 §2.2; TOK-1).

    Args:
        token_endpoint: From validated AS metadata.
        code: The code from :func:`tether.oauth.callback.validate_callback`.
        code_verifier: The pending authorization's verifier.
        redirect_uri: The same value sent in the authorization request.
        resource: The validated resource (``None`` to omit).
        auth: From :func:`tether.oauth.client_auth.client_auth`.
        custom_params: The server's ``token_params`` (``None`` removes a default).

    Returns:
        The request to POST.

    Raises:
        ConfigurationError: Custom params touch a protected key.
    """
    defaults = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    return _form(
        token_endpoint,
        defaults,
        resource=resource,
        auth=auth,
        custom_params=custom_params,
    )


def refresh_request(
    token_endpoint: str,
    *,
    refresh_token: SecretStr,
    resource: str | None,
    auth: ClientAuth,
    narrow_to: Sequence[str] | None = None,
    granted_scopes: Sequence[str] = (),
    custom_params: Mapping[str, str | None] | None = None,
) -> FormPost:
    """Build a refresh request (RFC 6749 §6, RFC 8707 §2.2; RFR-3).

    No ``scope`` is sent unless narrowing: a refresh cannot widen scope (SCP-8).

    Args:
        token_endpoint: From validated AS metadata.
        refresh_token: The current connection's refresh token.
        resource: The validated resource (``None`` to omit).
        auth: Client authentication, as at the code exchange.
        narrow_to: Scopes to narrow to; must be a subset of ``granted_scopes``.
        granted_scopes: The scopes recorded on the connection.
        custom_params: The server's ``token_params``.

    Returns:
        The request to POST.

    Raises:
        UsageError: ``narrow_to`` asks for a scope that was not granted.
        ConfigurationError: Custom params touch a protected key.
    """
    defaults = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.get_secret_value(),
    }
    if narrow_to:
        wider = sorted(set(narrow_to) - set(granted_scopes))
        if wider:
            raise UsageError(
                f"a refresh cannot add scopes ({', '.join(wider)}); "
                "authorize again (RFC 6749 §6)"
            )
        defaults["scope"] = " ".join(narrow_to)
    return _form(
        token_endpoint,
        defaults,
        resource=resource,
        auth=auth,
        custom_params=custom_params,
    )


def client_credentials_request(
    token_endpoint: str,
    *,
    resource: str | None,
    scopes: Sequence[str],
    auth: ClientAuth,
    custom_params: Mapping[str, str | None] | None = None,
) -> FormPost:
    """Build a ``client_credentials`` request (RFC 6749 §4.4.2; EXT-3, later work).

    Args:
        token_endpoint: From validated AS metadata.
        resource: The validated resource (``None`` to omit).
        scopes: Scopes to request; empty omits ``scope``.
        auth: Client authentication; must not be ``none`` (RFC 6749 §4.4).
        custom_params: The server's ``token_params``.

    Returns:
        The request to POST.

    Raises:
        ConfigurationError: ``auth`` is the ``none`` method, or custom params touch a
            protected key.
    """
    if auth.method == "none":
        raise ConfigurationError(
            "the client_credentials grant needs client authentication (RFC 6749 §4.4)"
        )
    defaults = {"grant_type": "client_credentials"}
    if scopes:
        defaults["scope"] = " ".join(scopes)
    return _form(
        token_endpoint,
        defaults,
        resource=resource,
        auth=auth,
        custom_params=custom_params,
    )


def raise_for_oauth_error(
    members: Mapping[str, Any], *, url: str, step: str = "token"
) -> None:
    """Raise the typed OAuth error when the body has an ``error`` member (RFC 6749 §5.2).

    Args:
        members: A decoded response body.
        url: The endpoint, named in the error.
        step: The flow step, named in the error.

    Raises:
        OAuthError: The subclass for the ``error`` code.
    """
    error = members.get("error")
    if error is None:
        return
    raise OAuthError.from_response(
        str(error),
        first_str(members, "error_description"),
        first_str(members, "error_uri"),
        server=url,
        step=step,
    )


def parse_token_response(
    status: int,
    body: bytes,
    content_type: str | None,
    *,
    now: datetime,
    url: str,
    requested_scopes: Sequence[str] = (),
    dpop: bool = False,
) -> TokenSet:
    """Turn a token endpoint answer into a :class:`TokenSet` (RFC 6749 §5.1, §5.2; TOK-4).

    Args:
        status: HTTP status.
        body: Raw body.
        content_type: Its ``Content-Type``.
        now: The time of receipt (aware datetime from the hub's clock).
        url: The token endpoint, named in errors.
        requested_scopes: Scopes asked for; granted when ``scope`` is absent (SCP-12).
            For a refresh, pass the connection's granted scopes.
        dpop: The request carried a DPoP proof, so ``token_type: DPoP`` is expected
            (RFC 9449 §5); a ``Bearer`` answer stays Bearer.

    Returns:
        The token set; ``refresh_token`` is only what this response carried.

    Raises:
        OAuthError: An ``error`` member, whatever the status (TOK-5).
        RemoteError: A non-2xx status without an OAuth error body
            (``details["status"]``; 429 and 5xx are worth retrying, RFR-6).
        InvalidResponse: HTML or undecodable body, no ``access_token``, a token type
            other than Bearer, or a bad ``expires_in``.
    """
    try:
        members = decode_form_or_json(
            body,
            content_type,
            url=url,
            error=InvalidResponse,
            what="token response",
            step="token",
        )
    except InvalidResponse:
        if 200 <= status < 300:
            raise
        members = {}
    raise_for_oauth_error(members, url=url)
    if not 200 <= status < 300:
        raise RemoteError(
            f"the token endpoint answered HTTP {status}",
            server=url,
            step="token",
            details={"status": status},
        )
    access_token = first_str(members, "access_token")
    if access_token is None:
        raise _invalid(url, "has no access_token")
    return TokenSet(
        access_token=SecretStr(_checked_token(access_token, "access_token", url)),
        token_type=_token_type(members.get("token_type"), url, dpop=dpop),
        refresh_token=_secret(_refresh_token(members, url)),
        expires_at=_expires_at(members.get("expires_in"), now, url),
        scopes=_scopes(members.get("scope"), requested_scopes, url),
    )


def _invalid(url: str, what: str) -> InvalidResponse:
    return InvalidResponse(f"the token response {what}", server=url, step="token")


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def _checked_token(value: str, name: str, url: str) -> str:
    """The token, if it is 1*VSCHAR and not too long; the message never quotes it."""
    if len(value) > MAX_TOKEN_LENGTH:
        raise _invalid(
            url,
            f"has a {name} longer than {MAX_TOKEN_LENGTH} characters ({len(value)})",
        )
    if not _VSCHAR.fullmatch(value):
        raise _invalid(
            url,
            f"has a {name} with characters a token cannot contain (spaces, line "
            "breaks, control or non-ASCII characters; RFC 6749 Appendix A, "
            "RFC 6750 §2.1)",
        )
    return value


def _refresh_token(members: Mapping[str, Any], url: str) -> str | None:
    value = first_str(members, "refresh_token")
    return None if value is None else _checked_token(value, "refresh_token", url)


def _token_type(value: Any, url: str, *, dpop: bool = False) -> str:
    # RFC 6749 §5.1 makes token_type REQUIRED; the reference treats absence as Bearer.
    if value is None:
        return "Bearer"
    if isinstance(value, str) and value.lower() == "bearer":  # RFC 6749 §5.1: any case
        return "Bearer"
    if isinstance(value, str) and value.lower() == "dpop":
        if dpop:
            return "DPoP"
        raise _invalid(url, "has token_type DPoP, but the request carried no proof")
    raise _invalid(url, "has a token_type other than Bearer or DPoP (G-7)")


def _expires_at(value: Any, now: datetime, url: str) -> datetime | None:
    """``now + expires_in``, clamped to :data:`MAX_EXPIRES_IN` (rule in the docstring)."""
    seconds = _lifetime(value, url)
    return None if seconds is None else now + timedelta(seconds=seconds)


def _lifetime(value: Any, url: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):  # ASCII only: "²".isdigit() is true
            raise _invalid(url, "has a non-numeric expires_in")
        # Over 12 digits is past any cap; int() would refuse > 4300 digits anyway.
        digits = text.lstrip("0")
        return MAX_EXPIRES_IN if len(digits) > 12 else min(int(text), MAX_EXPIRES_IN)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(url, "has a non-numeric expires_in")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(url, "has an expires_in that is not a finite number")
    if isinstance(value, float) and not value.is_integer():
        raise _invalid(url, "has a non-numeric expires_in (not a whole number)")
    if value < 0:
        raise _invalid(url, "has a negative expires_in")
    return int(min(value, MAX_EXPIRES_IN))


def _scopes(value: Any, requested: Sequence[str], url: str) -> tuple[str, ...]:
    if value is None:
        return tuple(requested)
    if not isinstance(value, str):
        raise _invalid(url, "has a scope that is not a string (RFC 6749 §3.3)")
    return tuple(value.split())


def merge_refreshed(
    new: TokenSet, *, current_refresh_token: SecretStr | None
) -> TokenSet:
    """Keep the current refresh token when a refresh response omits one (RFR-4).

    Only ever pass the refresh token of the connection being refreshed, never one from an
    earlier connection (G-11). A rotated token in ``new`` replaces it.

    Args:
        new: The parsed refresh response.
        current_refresh_token: The refresh token that was just redeemed.

    Returns:
        ``new``, with ``refresh_token`` carried forward if it had none.
    """
    if new.refresh_token is not None:
        return new
    return new.model_copy(update={"refresh_token": current_refresh_token})


def require_refresh_token(tokens: TokenSet, *, required: bool) -> TokenSet:
    """Enforce the server's ``require_refresh_token`` option (design-notes R3.9 rule 2).

    A missing refresh token is allowed by the protocol (RFR-7), so this is a
    :class:`~tether.errors.ConfigurationError`: the admin's requirement cannot be met
    with the current settings (scopes such as ``offline_access``, or ``access_type``).

    Args:
        tokens: After :func:`merge_refreshed` for a refresh, as parsed for an exchange.
        required: The server's ``require_refresh_token`` option.

    Returns:
        ``tokens`` unchanged.

    Raises:
        ConfigurationError: ``required`` and no refresh token is held.
    """
    if required and tokens.refresh_token is None:
        raise ConfigurationError(
            "the authorization server granted no refresh token, and this server "
            "requires one",
            step="token",
            hint="adjust the server's OAuth options (e.g. request offline_access or "
            "add access_type=offline) and connect again",
        )
    return tokens
