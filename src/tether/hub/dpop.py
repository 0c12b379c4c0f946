"""DPoP at the token endpoint: when to use it, which key, the nonce retry (RFC 9449).

Key ownership (design decision): **one key pair per connection** ``(server, subject)``.
A fresh EC P-256 key is made whenever a grant is obtained from scratch (code exchange,
machine grant without a stored key) and stored with the connection, its private key
sealed at rest like the tokens (``connections.dpop_key_enc``). Refreshes and re-runs of
a machine grant reuse it — RFC 9449 §5 binds a public client's refresh token to the key —
and a disconnect drops it with the tokens. Per connection rather than per registration,
so two users of one client never share a proof key and a leaked key exposes one grant.

Token requests carry a proof (``htm=POST``, ``htu`` = the token endpoint); a
``use_dpop_nonce`` answer (400 with ``DPoP-Nonce``, §8) is retried once with the nonce.
Resource requests are signed by :class:`tether.mcp.auth.BearerAuth`.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tether.errors import ConfigurationError, InvalidResponse
from tether.hub.context import HubContext, profile_of
from tether.net.fetch import HttpResponse
from tether.oauth._wire import load_json
from tether.oauth.client_auth import FormPost
from tether.oauth.dpop import (
    DPOP_HEADER,
    DPoPKey,
    dpop_proof,
    dpop_wanted,
    generate_key,
    load_key,
    token_nonce_error,
)
from tether.oauth.tokens import TokenSet
from tether.store.base import Connection, DiscoveryRecord, ServerRecord

__all__ = [
    "check_token_type",
    "connection_key",
    "grant_key",
    "post_token",
    "uses_dpop",
]


def uses_dpop(server: ServerRecord, discovery: DiscoveryRecord) -> bool:
    """The server's ``oauth.dpop`` rule against the AS metadata (see oauth/dpop.py).

    Raises:
        ConfigurationError: ``always`` and the AS cannot verify ES256 proofs.
    """
    advertised = discovery.as_metadata.get("dpop_signing_alg_values_supported")
    return dpop_wanted(
        server.oauth.dpop, advertised, issuer=discovery.issuer, server=server.name
    )


def connection_key(server: ServerRecord, conn: Connection) -> DPoPKey | None:
    """The stored key of a connection, for refreshes and resource requests.

    Raises:
        ConfigurationError: The grant is DPoP-bound but the key is missing or unusable.
    """
    if conn.dpop_key is None:
        if conn.token_type.lower() == "dpop":
            raise ConfigurationError(
                f"server '{server.name}' holds a DPoP-bound token but no DPoP key",
                server=server.name,
                step="dpop",
                hint="disconnect and connect the server again",
            )
        return None
    try:
        return load_key(conn.dpop_key)
    except ConfigurationError as exc:
        exc.server = server.name
        raise


def grant_key(
    server: ServerRecord, discovery: DiscoveryRecord, conn: Connection | None
) -> DPoPKey | None:
    """The key for obtaining a grant: the connection's own, else a new one (or none).

    Args:
        server: The server.
        discovery: Its stored discovery (the AS metadata decides under ``auto``).
        conn: A connection whose key may be reused (machine grants re-run); ``None``
            for a new grant (code exchange), which always gets a fresh key.
    """
    if not uses_dpop(server, discovery):
        return None
    if conn is not None and conn.dpop_key is not None:
        return connection_key(server, conn)
    return generate_key()


def check_token_type(
    server: ServerRecord, tokens: TokenSet, key: DPoPKey | None
) -> SecretStr | None:
    """What to store as the connection's key after a token response.

    A ``Bearer`` answer to a proof is accepted (the AS did not bind the token) unless
    the server's ``oauth.dpop`` is ``always``.

    Returns:
        The key's PEM to store, or ``None`` when no proof was sent.

    Raises:
        ConfigurationError: ``always`` and the AS issued a Bearer token.
    """
    if key is None:
        return None
    if tokens.token_type != "DPoP" and server.oauth.dpop == "always":  # noqa: S105
        raise ConfigurationError(
            "the authorization server issued a Bearer token although this server "
            "requires DPoP-bound tokens",
            server=server.name,
            step="token",
            hint="set the server's dpop setting to auto, or enable DPoP at the AS",
        )
    return key.pem


def _members(response: HttpResponse) -> Any:
    try:
        return load_json(response.body)
    except (ValueError, UnicodeDecodeError):
        return None


async def post_token(
    ctx: HubContext,
    server: ServerRecord,
    post: FormPost,
    key: DPoPKey | None,
    *,
    step: str = "token",
) -> HttpResponse:
    """POST a token request, with a DPoP proof when ``key`` is given.

    A ``use_dpop_nonce`` error carrying a ``DPoP-Nonce`` header is retried once with a
    new proof holding that nonce (RFC 9449 §8); any other answer is returned as is for
    :func:`~tether.oauth.tokens.parse_token_response`.
    """
    headers = dict(post.headers)
    nonce: str | None = None
    for attempt in range(2):
        if key is not None:
            headers[DPOP_HEADER] = dpop_proof(
                key,
                method="POST",
                url=post.url,
                now=ctx.clock.now(),
                jti=ctx.random.token(16),
                nonce=nonce,
            )
        response = await ctx.fetcher.request(
            "POST",
            post.url,
            profile=profile_of(server),
            server=server.name,
            step=step,
            headers=headers,
            form=post.body,
        )
        if key is None or attempt or response.status not in (400, 401):
            return response
        try:
            nonce = token_nonce_error(
                _members(response), response.header("dpop-nonce"), url=post.url
            )
        except InvalidResponse as exc:  # GEN-4: the admin's server, the endpoint
            exc.details.setdefault("url", post.url)
            exc.server = server.name
            raise
        if nonce is None:
            return response
    return response  # pragma: no cover - the loop always returns
