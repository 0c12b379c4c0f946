"""The authorization request: scope selection and the authorization URL.

RFC 6749 §4.1.1, §3.1; RFC 7636 §4.3; RFC 8707 §2.1; MCP 2025-11-25 *Authorization*,
"Scope Selection Strategy"; requirements.md AUTHZ-6, SCP-2, SCP-4, SCP-5, SCP-7.

Builds the URL the user's browser is sent to. ``state`` and the PKCE verifier are made by
the caller from its random source; the hub stores them in the pending authorization
before redirecting (AUTHZ-5). Left out: pushed authorization requests (RFC 9126) and
request objects (RFC 9101).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether.errors import ConfigurationError
from tether.oauth.params import merge_params
from tether.oauth.pkce import CODE_CHALLENGE_METHOD

__all__ = [
    "OFFLINE_ACCESS",
    "authorization_url",
    "select_scopes",
    "union_scopes",
    "with_offline_access",
]

OFFLINE_ACCESS = "offline_access"


def select_scopes(
    *,
    configured: str | Sequence[str] | None = None,
    challenge_scope: Sequence[str] = (),
    prm_scopes_supported: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """Choose the scopes of an initial authorization request (SCP-2, G-18).

    Order: the admin's configured scopes (an override that replaces the computation);
    else the ``scope`` of the challenge that triggered the flow, taken as authoritative
    (SCP-3); else **all** of the protected resource's ``scopes_supported``; else none, and
    ``scope`` is left out. The AS's own ``scopes_supported`` is not a step (SCP-2).

    Args:
        configured: Admin-configured scopes, space-separated or a sequence.
        challenge_scope: ``BearerChallenge.scope`` of the triggering 401/403.
        prm_scopes_supported: ``ProtectedResourceMetadata.scopes_supported``.

    Returns:
        Scopes in order, without duplicates; empty means "omit ``scope``".
    """
    if isinstance(configured, str):
        configured = configured.split()
    for source in (configured, challenge_scope, prm_scopes_supported):
        if source:
            return union_scopes(source)
    return ()


def union_scopes(*scope_sets: Iterable[str]) -> tuple[str, ...]:
    """Union of scope sets in first-seen order (SCP-7: previous, granted, challenged).

    Args:
        *scope_sets: Scope sequences; earlier ones come first.

    Returns:
        The union without duplicates or empty strings.
    """
    return tuple(dict.fromkeys(s for scopes in scope_sets for s in scopes if s))


def with_offline_access(
    scopes: Sequence[str], as_scopes_supported: Sequence[str] | None
) -> tuple[str, ...]:
    """Add ``offline_access`` when the **AS** lists it (SCP-4, MAY).

    Never assume a refresh token follows (RFR-7). With no other scope selected this adds
    nothing: asking only for ``offline_access`` would change the meaning of "no scope".

    Args:
        scopes: The selected scopes.
        as_scopes_supported: ``AuthorizationServerMetadata.scopes_supported``.

    Returns:
        ``scopes``, plus ``offline_access`` when it applies.
    """
    if scopes and as_scopes_supported and OFFLINE_ACCESS in as_scopes_supported:
        return union_scopes(scopes, (OFFLINE_ACCESS,))
    return tuple(scopes)


def authorization_url(
    authorization_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    resource: str | None,
    scopes: Sequence[str] = (),
    custom_params: Mapping[str, str | None] | None = None,
) -> str:
    """Build the authorization request URL (AUTHZ-6).

    Parameters, in order: ``response_type=code``, ``client_id``, ``redirect_uri``,
    ``state``, ``code_challenge``, ``code_challenge_method=S256``, ``resource`` (RFC 8707
    §2.1, the one validated value, RES-1), ``scope`` when any, ``prompt=consent`` when
    ``offline_access`` is requested (SCP-5; OIDC Core §11), then the admin's custom
    params (a ``None`` removes a default such as ``resource`` or ``prompt``; protected
    keys raise). Query components already in the endpoint are kept (RFC 6749 §3.1, G-23);
    a key Tether sets (or the admin removes) replaces the endpoint's own, so no key
    appears twice.

    Args:
        authorization_endpoint: From validated AS metadata.
        client_id: The client identifier (a URL for CIMD).
        redirect_uri: Tether's callback, exactly as registered (REG-4).
        state: The one-time ``state`` (AUTHZ-4).
        code_challenge: ``pkce.code_challenge(verifier)``.
        resource: The validated resource, or ``None`` to omit it.
        scopes: From :func:`select_scopes` (possibly with offline access).
        custom_params: The server's ``authorization_params``.

    Returns:
        The full URL.

    Raises:
        ConfigurationError: Custom params touch a protected key, or the endpoint has a
            fragment (RFC 6749 §3.1 MUST NOT).
    """
    parts = urlsplit(authorization_endpoint)
    if parts.fragment:
        raise ConfigurationError(
            "the authorization endpoint has a fragment (RFC 6749 §3.1)",
            server=authorization_endpoint,
        )
    defaults = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": CODE_CHALLENGE_METHOD,
    }
    if resource is not None:
        defaults["resource"] = resource
    if scopes:
        defaults["scope"] = " ".join(scopes)
    if OFFLINE_ACCESS in scopes:
        defaults["prompt"] = "consent"
    ours = merge_params(defaults, custom_params, kind="authorization")
    replaced = ours.keys() | (custom_params or {}).keys()
    kept = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in replaced
    ]
    query = urlencode([*kept, *ours.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
