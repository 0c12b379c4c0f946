"""Enterprise-managed authorization: ID-JAG token exchange and the JWT bearer grant.

RFC 8693 §2.1, §2.2 (token exchange); RFC 7523 §2.1 (JWT as an authorization grant);
draft-ietf-oauth-identity-assertion-authz-grant (ID-JAG); MCP SEP-990
(``io.modelcontextprotocol/enterprise-managed-authorization``); requirements.md EXT-4 …
EXT-6.

Two requests, both built here as :class:`~tether.oauth.client_auth.FormPost` for the hub
to send:

1. :func:`id_jag_request` — at the enterprise IdP's token endpoint, trade the user's ID
   token for an Identity Assertion JWT Authorization Grant (ID-JAG):
   ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
   ``requested_token_type=urn:ietf:params:oauth:token-type:id-jag``,
   ``subject_token=<ID token>``,
   ``subject_token_type=urn:ietf:params:oauth:token-type:id_token``, ``audience`` = the
   MCP authorization server's issuer (MUST), ``resource`` = the MCP server's RFC 9728
   resource, ``scope`` when any. :func:`parse_id_jag_response` checks the answer's
   ``issued_token_type`` (RFC 8693 §2.2.1: REQUIRED) is the ID-JAG type.
2. :func:`jwt_bearer_request` — at the MCP AS's token endpoint,
   ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with ``assertion=<ID-JAG>``
   and the client's own authentication there; the answer is an ordinary token response
   (:func:`tether.oauth.tokens.parse_token_response`).

The ID-JAG and the ID token are secrets: they travel only in POST bodies (EXT-6) and are
:class:`pydantic.SecretStr` everywhere else. Tether does not validate the ID-JAG (it is
addressed to the AS, which does); it only refuses a response that is not one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, SecretStr

from tether.errors import InvalidResponse, RemoteError
from tether.oauth._wire import decode_form_or_json, first_str
from tether.oauth.client_auth import ClientAuth, FormPost
from tether.oauth.params import merge_params
from tether.oauth.tokens import FORM_HEADERS, MAX_EXPIRES_IN, raise_for_oauth_error

__all__ = [
    "ID_JAG_GRANT_PROFILE",
    "ID_JAG_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_BEARER_GRANT",
    "TOKEN_EXCHANGE_GRANT",
    "IdJag",
    "id_jag_request",
    "jwt_bearer_request",
    "parse_id_jag_response",
    "supports_id_jag",
]

TOKEN_EXCHANGE_GRANT: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
"""RFC 8693 §2.1 ``grant_type``."""
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
"""RFC 7523 §2.1 ``grant_type``."""
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
"""RFC 8693 §3: an OpenID Connect ID token as ``subject_token_type``."""
ID_JAG_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id-jag"  # noqa: S105
"""The ID-JAG draft's token type (``requested_token_type``, ``issued_token_type``)."""
ID_JAG_GRANT_PROFILE: Final = "urn:ietf:params:oauth:grant-profile:id-jag"
"""What an AS lists in ``authorization_grant_profiles_supported`` (EXT-5)."""
_DIGITS: Final = re.compile(r"[0-9]+")


class IdJag(BaseModel):
    """An ID-JAG issued by the IdP.

    Attributes:
        assertion: The JWT (masked; never logged, EXT-6).
        expires_in: The lifetime the IdP reported, if any (seconds).
        scope: The scope the IdP reported, if any.
    """

    model_config = ConfigDict(frozen=True)

    assertion: SecretStr
    expires_in: int | None = None
    scope: str | None = None


def supports_id_jag(profiles: Sequence[str] | None) -> bool:
    """Whether AS metadata advertises the ID-JAG grant profile (EXT-5).

    Absent metadata is not proof of absence (the conformance AS and early deployments
    do not publish it), so the hub reports this rather than refusing on it.
    """
    return bool(profiles) and ID_JAG_GRANT_PROFILE in (profiles or ())


def id_jag_request(
    token_endpoint: str,
    *,
    id_token: SecretStr,
    audience: str,
    resource: str | None,
    scopes: Sequence[str],
    auth: ClientAuth,
    custom_params: Mapping[str, str | None] | None = None,
) -> FormPost:
    """Build the RFC 8693 token exchange for an ID-JAG (module docstring, step 1).

    Args:
        token_endpoint: The IdP's token endpoint (admin configuration).
        id_token: The user's ID token from the IdP.
        audience: The MCP authorization server's issuer identifier.
        resource: The MCP server's validated resource (``None`` to omit).
        scopes: Scopes to ask for; empty omits ``scope``.
        auth: Client authentication at the IdP (``none`` puts ``client_id`` in the
            body; the IdP decides whether that is enough).
        custom_params: Extra parameters (``None`` removes a default such as
            ``resource``); the grant's own parameters cannot be replaced.

    Returns:
        The request to POST.

    Raises:
        ConfigurationError: Custom params touch a protected key.
    """
    core = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "requested_token_type": ID_JAG_TOKEN_TYPE,
        "subject_token": id_token.get_secret_value(),
        "subject_token_type": ID_TOKEN_TYPE,
        "audience": audience,
    }
    defaults = dict(core)
    if resource is not None:
        defaults["resource"] = resource
    if scopes:
        defaults["scope"] = " ".join(scopes)
    body = _merged(defaults, core, custom_params)
    body.update(auth.body)
    return FormPost(
        url=token_endpoint, body=body, headers={**FORM_HEADERS, **auth.headers}
    )


def parse_id_jag_response(
    status: int, body: bytes, content_type: str | None, *, url: str
) -> IdJag:
    """Read the IdP's token exchange answer (RFC 8693 §2.2).

    Args:
        status: HTTP status.
        body: Raw body.
        content_type: Its ``Content-Type``.
        url: The IdP token endpoint, named in errors.

    Returns:
        The ID-JAG.

    Raises:
        OAuthError: An ``error`` member (RFC 8693 §2.2.2), whatever the status.
        RemoteError: A non-2xx status without an OAuth error body.
        InvalidResponse: Undecodable body, no ``access_token``, or an
            ``issued_token_type`` other than the ID-JAG type.
    """
    step = "token_exchange"
    try:
        members = decode_form_or_json(
            body,
            content_type,
            url=url,
            error=InvalidResponse,
            what="token exchange response",
            step=step,
        )
    except InvalidResponse:
        if 200 <= status < 300:
            raise
        members = {}
    raise_for_oauth_error(members, url=url, step=step)
    if not 200 <= status < 300:
        raise RemoteError(
            f"the IdP token endpoint answered HTTP {status}",
            server=url,
            step=step,
            details={"status": status},
        )
    issued = first_str(members, "issued_token_type")
    if issued != ID_JAG_TOKEN_TYPE:
        raise InvalidResponse(
            f"the token exchange issued {issued or 'no issued_token_type'}, not an "
            f"ID-JAG ({ID_JAG_TOKEN_TYPE}; RFC 8693 §2.2.1)",
            server=url,
            step=step,
            hint="check that the IdP has enterprise-managed authorization (ID-JAG) "
            "enabled for this client",
        )
    assertion = first_str(members, "access_token")
    if not assertion:
        raise InvalidResponse(
            "the token exchange response has no access_token (the ID-JAG)",
            server=url,
            step=step,
        )
    return IdJag(
        assertion=SecretStr(assertion),
        expires_in=_int_or_none(members.get("expires_in")),
        scope=first_str(members, "scope"),
    )


def _merged(
    defaults: Mapping[str, str],
    core: Mapping[str, str],
    custom: Mapping[str, str | None] | None,
) -> dict[str, str]:
    """Custom params over the defaults; the grant's own parameters always win."""
    body = merge_params(defaults, custom, kind="token")
    body.update(core)
    return body


def _int_or_none(value: Any) -> int | None:
    """A lifetime in seconds, clamped to one year (as ``expires_in`` in tokens)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(0, min(value, MAX_EXPIRES_IN))
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):  # ASCII, not "²"
        digits = value.strip().lstrip("0")
        return MAX_EXPIRES_IN if len(digits) > 12 else min(int(value), MAX_EXPIRES_IN)
    return None


def jwt_bearer_request(
    token_endpoint: str,
    *,
    assertion: SecretStr,
    scopes: Sequence[str],
    auth: ClientAuth,
    resource: str | None = None,
    custom_params: Mapping[str, str | None] | None = None,
) -> FormPost:
    """Build the RFC 7523 §2.1 grant that redeems an ID-JAG (module docstring, step 2).

    Args:
        token_endpoint: The MCP AS token endpoint (from validated metadata).
        assertion: The ID-JAG.
        scopes: Scopes to ask for; empty omits ``scope``.
        auth: The client's authentication at the MCP AS.
        resource: Sent only when given; the ID-JAG already names the resource.
        custom_params: The server's ``token_params``.

    Returns:
        The request to POST.

    Raises:
        ConfigurationError: Custom params touch a protected key.
    """
    core = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion.get_secret_value()}
    defaults = dict(core)
    if scopes:
        defaults["scope"] = " ".join(scopes)
    if resource is not None:
        defaults["resource"] = resource
    body = _merged(defaults, core, custom_params)
    body.update(auth.body)
    return FormPost(
        url=token_endpoint, body=body, headers={**FORM_HEADERS, **auth.headers}
    )
