"""Credentials on MCP requests, as ``httpx2.Auth`` flows (design-notes S1, D3.2).

Two modes from design-notes R3.2:

* :class:`BearerAuth` (``oauth``): attaches ``Authorization: Bearer <token>`` from a
  :class:`TokenSource`; on 401/403 it parses the ``WWW-Authenticate`` challenge (RFC 6750
  §3, RFC 9728 §5.1), asks the source for a fresh token once and repeats the request once.
  A second refusal raises :class:`~tether.errors.AuthorizationRequired` (401) or
  :class:`~tether.errors.StepUpRequired` (403 ``insufficient_scope``, RFC 6750 §3.1).
* :class:`HeaderAuth` (``header_secret``): one static header, ``<scheme> <secret>`` or the
  raw secret when the scheme is blank; a 401 is left to the caller.

A token of type ``DPoP`` (RFC 9449) is sent as ``Authorization: DPoP <token>`` with a
fresh ``DPoP`` proof header (``htm``, ``htu``, ``ath``, the last ``DPoP-Nonce`` the server
sent) on every request; a 401 with ``use_dpop_nonce`` is repeated once with the new nonce
before any refresh (RFC 9449 §7.1, §9).

The token source (implemented by ``hub/``) owns storage, the cross-process lock, the
proactive refresh 60 s before expiry and the reactive refresh (design-notes D3.3). These flows
never run discovery, registration or a browser redirect.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx2

from tether.errors import AuthorizationRequired, StepUpRequired
from tether.oauth.challenge import BearerChallenge, bearer_challenge
from tether.oauth.dpop import DPOP_HEADER, DPoPKey, dpop_proof, nonce_challenge

__all__ = ["AccessToken", "BearerAuth", "HeaderAuth", "TokenSource"]


@dataclass(frozen=True)
class AccessToken:
    """An access token to present to one MCP server for one subject.

    Attributes:
        access_token: The token value; never shown in ``repr``.
        expires_at: When it expires (timezone-aware), or ``None`` when unknown.
        scopes: The scopes it was granted, when known.
        token_type: ``Bearer`` or ``DPoP`` (RFC 9449).
        dpop_key: The proof key of a ``DPoP`` token.
    """

    access_token: str = field(repr=False)
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    dpop_key: DPoPKey | None = field(default=None, repr=False)

    @property
    def is_dpop(self) -> bool:
        """True when the token is presented with a DPoP proof."""
        return self.token_type.lower() == "dpop" and self.dpop_key is not None

    def __repr__(self) -> str:
        expiry = self.expires_at.isoformat() if self.expires_at else None
        return f"AccessToken(access_token='***', expires_at={expiry!r})"


class TokenSource(Protocol):
    """Where :class:`BearerAuth` gets tokens; ``hub/`` implements it per (server, subject)."""

    async def current(self) -> AccessToken:
        """Return a usable token, refreshed first if it expires within 60 s.

        Raises:
            AuthorizationRequired: There is no usable grant.
        """
        ...

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        """The server refused ``token``: refresh once and return the new token, or raise.

        Args:
            token: The token the server refused.
            challenge: The server's ``Bearer`` challenge, if it sent one.
            status: 401 or 403.

        Raises:
            AuthorizationRequired: No refresh is possible; a user must connect again.
            StepUpRequired: The challenge says ``insufficient_scope``; the error lists
                the scopes to request (``details["required_scopes"]``).
        """
        ...


class BearerAuth(httpx2.Auth):
    """Attach the connection's bearer token; turn 401/403 into one refresh and one retry."""

    def __init__(
        self,
        source: TokenSource,
        *,
        server: str | None = None,
        now: Callable[[], datetime] | None = None,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        """Create the flow.

        Args:
            source: The token source for one (server, subject).
            server: Server name for error messages.
            now: The clock for DPoP proofs (default: the system clock, UTC).
            random: Random bytes for DPoP ``jti`` values.
        """
        self._source = source
        self._server = server
        self._now = now or (lambda: datetime.now(UTC))
        self._random = random
        self._nonce: str | None = None  # the server's last DPoP-Nonce (RFC 9449 §9)

    def _present(self, request: httpx2.Request, token: AccessToken) -> None:
        """Set ``Authorization`` (and, for DPoP, a fresh proof) on ``request``."""
        if token.is_dpop and token.dpop_key is not None:
            request.headers["Authorization"] = f"DPoP {token.access_token}"
            request.headers[DPOP_HEADER] = dpop_proof(
                token.dpop_key,
                method=request.method,
                url=str(request.url),
                now=self._now(),
                jti=self._random(16),
                nonce=self._nonce,
                access_token=token.access_token,
            )
            return
        request.headers.pop(DPOP_HEADER, None)
        request.headers["Authorization"] = f"Bearer {token.access_token}"

    def _nonce_retry(self, response: httpx2.Response, token: AccessToken) -> bool:
        """Remember a new ``DPoP-Nonce``; True when a 401 asks to resend with it."""
        if not token.is_dpop:
            return False
        header = response.headers.get("dpop-nonce")
        previous = self._nonce
        if header:
            self._nonce = header
        if response.status_code != 401:
            return False
        nonce = nonce_challenge(response.headers.get_list("www-authenticate"), header)
        return nonce is not None and nonce != previous

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send with the current token; after a 401/403, refresh once and resend once.

        Raises:
            AuthorizationRequired: From the source, or when the resent request is
                refused with 401.
            StepUpRequired: From the source, or a second 403 ``insufficient_scope``.
        """
        token = await self._source.current()  # refreshed 60 s before expiry
        self._present(request, token)
        response = yield request
        if self._nonce_retry(response, token):  # RFC 9449 §9: once, with the nonce
            self._present(request, token)
            response = yield request
            self._nonce_retry(response, token)
        if response.status_code not in (401, 403):
            return
        challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
        status = response.status_code
        token = await self._source.rejected(token, challenge, status=status)
        self._present(request, token)
        response = yield request
        if self._nonce_retry(response, token):
            self._present(request, token)
            response = yield request
            self._nonce_retry(response, token)
        if response.status_code in (401, 403):
            challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
            raise _refusal(response.status_code, challenge, self._server)


def _refusal(
    status: int, challenge: BearerChallenge | None, server: str | None
) -> AuthorizationRequired:
    """The error for a refusal that survived one refresh (RFC 6750 §3.1)."""
    details: dict[str, object] = {"status": status}
    if challenge is not None and challenge.error:
        details["error"] = challenge.error
    if challenge is not None and challenge.error == "insufficient_scope":
        details["required_scopes"] = list(challenge.scope)
        return StepUpRequired(
            "the server needs more scope than the user granted",
            server=server,
            step="mcp",
            hint="reconnect the server and approve the extra permissions",
            details=details,
        )
    return AuthorizationRequired(
        f"the server refused the access token (HTTP {status}) after a refresh",
        server=server,
        step="mcp",
        hint="connect the server again",
        details=details,
    )


class HeaderAuth(httpx2.Auth):
    """One static credential header (design-notes R3.2 ``header_secret``).

    Sends ``<header>: <scheme> <secret>``, or the raw secret when ``scheme`` is blank
    (API-key headers such as ``X-API-Key``); sends nothing when there is no secret.
    """

    def __init__(
        self, secret: str | None, *, header: str = "Authorization", scheme: str = ""
    ) -> None:
        """Create the flow.

        Args:
            secret: The credential; ``None`` or empty sends no header.
            header: Header name.
            scheme: Scheme put before the secret, e.g. ``"Bearer"``; blank for none.
        """
        self._secret = secret
        self._header = header
        self._scheme = scheme.strip()

    def __repr__(self) -> str:
        return f"HeaderAuth(header={self._header!r}, scheme={self._scheme!r}, secret='***')"

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Add the header (if there is a secret) and send once."""
        if self._secret:
            value = f"{self._scheme} {self._secret}" if self._scheme else self._secret
            request.headers[self._header] = value
        yield request
