"""Token revocation (RFC 7009 §2.1, §2.2, §2.2.1; requirements.md REV-1 – REV-4; gap G-12).

The hub revokes on disconnect: the refresh token first (which should also end access
tokens of the same grant), then the access token, each with ``token_type_hint`` and the
negotiated client authentication (``revocation_endpoint_auth_methods_supported`` feeds
:func:`tether.oauth.client_auth.choose_auth_method`). Local tokens are deleted whatever
the outcome (REV-5); that is the hub's job.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal

from pydantic import SecretStr

from tether.errors import InvalidResponse, RemoteError, TemporarilyUnavailable
from tether.oauth._wire import decode_json_object
from tether.oauth.client_auth import ClientAuth, FormPost
from tether.oauth.tokens import FORM_HEADERS, raise_for_oauth_error

__all__ = [
    "MAX_RETRY_AFTER",
    "TokenTypeHint",
    "check_revocation_response",
    "retry_after_seconds",
    "revocation_requests",
]

TokenTypeHint = Literal["refresh_token", "access_token"]

MAX_RETRY_AFTER: Final = 86400.0
"""Longest ``Retry-After`` believed, in seconds (a day); longer values are capped."""

_DIGITS: Final = re.compile(r"[0-9]+")


def revocation_requests(
    revocation_endpoint: str,
    *,
    auth: ClientAuth,
    access_token: SecretStr | None,
    refresh_token: SecretStr | None,
) -> list[FormPost]:
    """Build the revocation requests for one grant, refresh token first (REV-2, REV-3).

    Args:
        revocation_endpoint: From validated AS metadata.
        auth: Client authentication for the revocation endpoint.
        access_token: The access token, if held.
        refresh_token: The refresh token, if held.

    Returns:
        Zero, one or two requests, in the order to send them.
    """
    pairs: list[tuple[SecretStr | None, TokenTypeHint]] = [
        (refresh_token, "refresh_token"),
        (access_token, "access_token"),
    ]
    return [
        FormPost(
            url=revocation_endpoint,
            body={
                "token": token.get_secret_value(),
                "token_type_hint": hint,
                **auth.body,
            },
            headers={**FORM_HEADERS, **auth.headers},
        )
        for token, hint in pairs
        if token is not None and token.get_secret_value()
    ]


def check_revocation_response(
    status: int, body: bytes, content_type: str | None, *, url: str
) -> None:
    """Interpret a revocation response (RFC 7009 §2.2, §2.2.1; REV-4).

    HTTP 200 is success whether or not the token was still valid, and the body is
    ignored. Otherwise an RFC 6749 §5.2 error body (plus ``unsupported_token_type``)
    becomes the typed ``OAuthError``. A 503 without one becomes
    :class:`~tether.errors.TemporarilyUnavailable`: the token may still be alive and the
    hub MAY retry after ``Retry-After`` (:func:`retry_after_seconds`).

    Args:
        status: HTTP status.
        body: Raw body.
        content_type: Its ``Content-Type``.
        url: The revocation endpoint, named in errors.

    Raises:
        OAuthError: An error body, or a 503 (``TemporarilyUnavailable``).
        RemoteError: Any other non-200 status (``details["status"]``).
    """
    if status == 200:
        return
    try:
        members = decode_json_object(
            body,
            content_type,
            url=url,
            error=InvalidResponse,
            what="revocation error",
            step="revocation",
        )
    except InvalidResponse:
        members = {}
    raise_for_oauth_error(members, url=url, step="revocation")
    if status == 503:
        raise TemporarilyUnavailable(
            "the revocation endpoint is temporarily unavailable (RFC 7009 §2.2.1); "
            "the token may still be valid",
            server=url,
            step="revocation",
            details={"status": status},
        )
    raise RemoteError(
        f"the revocation endpoint answered HTTP {status}",
        server=url,
        step="revocation",
        details={"status": status},
    )


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Parse ``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.

    delay-seconds is ``1*DIGIT`` in ASCII (``"²"`` is not a digit here, whatever
    :meth:`str.isdigit` says), capped at :data:`MAX_RETRY_AFTER`. An HTTP-date is in GMT
    (RFC 9110 §5.6.7); an obsolete form that parses without a zone (``-0000``) is read
    as UTC. Anything else is ignored: no retry is better than a crash in ``disconnect``.

    Args:
        value: The header value, if any.
        now: The current time (aware), for an HTTP-date.

    Returns:
        Seconds to wait (0 to :data:`MAX_RETRY_AFTER`), or ``None`` when absent or
        unparseable.
    """
    if value is None:
        return None
    text = value.strip()[:100]
    if _DIGITS.fullmatch(text):
        digits = text.lstrip("0")
        return MAX_RETRY_AFTER if len(digits) > 9 else min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delay = (when - now).total_seconds()
    return min(max(0.0, delay), MAX_RETRY_AFTER)
