"""Discovery payloads: protected resource and authorization server metadata.

RFC 9728 §2, RFC 8414 §2, OpenID Connect Discovery 1.0 §3; requirements.md PRM-6, PRM-7,
ASM-4 – ASM-7, AUTHZ-2.

Parsing and validating are separate steps. ``parse_*`` turns raw bytes into a frozen model
(shape and types only; unknown members are ignored because both formats are extensible).
``check_*`` enforces the rules that need context: the resource the client asked about
(RFC 9728 §3.3), the issuer the URL was built from (RFC 8414 §3.3) and MCP's PKCE rule.
String members that are compared later (``resource``, ``issuer``,
``authorization_servers``) stay raw strings: a URL type could re-serialise them (PRM-6).

Left out: signed metadata (RFC 8414 §2.1, RFC 9728 §2.2) and ``jwks`` content.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.errors import DiscoveryError, clean_text
from tether.oauth._wire import decode_json_object, is_http_url

__all__ = [
    "AuthorizationServerMetadata",
    "ProtectedResourceMetadata",
    "check_authorization_server_metadata",
    "parse_authorization_server_metadata",
    "parse_protected_resource_metadata",
]

_M = TypeVar("_M", bound=BaseModel)


class ProtectedResourceMetadata(BaseModel):
    """RFC 9728 §2 protected resource metadata (the members Tether reads).

    Attributes:
        resource: REQUIRED. The resource identifier, exactly as published.
        authorization_servers: Issuers of the authorization servers; MCP requires at
            least one (PRM-7).
        scopes_supported: Scopes the resource uses, in published order (SCP-2).
        bearer_methods_supported: How the resource accepts bearer tokens.
        resource_name: Human-readable name; remote text.
        resource_documentation: URL of developer documentation.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None = None
    bearer_methods_supported: tuple[str, ...] | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None


class AuthorizationServerMetadata(BaseModel):
    """RFC 8414 §2 authorization server metadata, with the MCP-relevant extensions (ASM-7).

    Attributes:
        issuer: REQUIRED. Compared to the discovery issuer by simple string comparison.
        authorization_endpoint: REQUIRED for the code grant (RFC 8414 §2).
        token_endpoint: REQUIRED unless only the implicit grant is supported.
        registration_endpoint: RFC 7591 dynamic registration endpoint.
        revocation_endpoint: RFC 7009 revocation endpoint.
        jwks_uri: The AS's JWK Set.
        scopes_supported: Scopes the AS knows (used only for ``offline_access``, SCP-4).
        response_types_supported: Must contain ``code`` when present.
        grant_types_supported: Absent means ``authorization_code`` and ``implicit``.
        token_endpoint_auth_methods_supported: Absent means ``client_secret_basic``.
        token_endpoint_auth_signing_alg_values_supported: For JWT client auth (later).
        revocation_endpoint_auth_methods_supported: Client auth at the revocation endpoint.
        code_challenge_methods_supported: RFC 7636 methods; MCP requires ``S256``.
        client_id_metadata_document_supported: The AS accepts URL client ids (CIMD).
        authorization_response_iss_parameter_supported: RFC 9207 §3.
        authorization_grant_profiles_supported: Enterprise-managed authorization (later).
        dpop_signing_alg_values_supported: RFC 9449 §5.1: the AS binds tokens to DPoP
            proofs signed with these algorithms.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    jwks_uri: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    response_types_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    token_endpoint_auth_signing_alg_values_supported: tuple[str, ...] | None = None
    revocation_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    client_id_metadata_document_supported: bool = False
    authorization_response_iss_parameter_supported: bool = False
    authorization_grant_profiles_supported: tuple[str, ...] | None = None
    dpop_signing_alg_values_supported: tuple[str, ...] | None = None


def _parse(model: type[_M], body: bytes, content_type: str | None, url: str) -> _M:
    what = (
        "protected resource metadata"
        if model is ProtectedResourceMetadata
        else "authorization server metadata"
    )
    members = decode_json_object(
        body, content_type, url=url, error=DiscoveryError, what=what, step="discovery"
    )
    try:
        return model.model_validate(members)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        raise DiscoveryError(
            f"invalid {what}: {clean_text(problems)}", server=url, step="discovery"
        ) from exc


def parse_protected_resource_metadata(
    body: bytes, content_type: str | None, *, url: str
) -> ProtectedResourceMetadata:
    """Parse a protected resource metadata response (RFC 9728 §3.2).

    Args:
        body: The raw body of a 200 response.
        content_type: Its ``Content-Type``.
        url: The metadata URL, named in errors.

    Returns:
        The metadata. Check ``resource`` with :func:`tether.oauth.resource.check_resource`.

    Raises:
        DiscoveryError: HTML or non-JSON body, missing ``resource``, or no
            ``authorization_servers`` (PRM-7).
    """
    metadata = _parse(ProtectedResourceMetadata, body, content_type, url)
    # PRM-7: MCP servers MUST list at least one authorization server.
    if not metadata.authorization_servers:
        raise DiscoveryError(
            "the metadata lists no authorization_servers (RFC 9728 §2, MCP "
            "Authorization)",
            server=url,
            step="discovery",
        )
    return metadata


def parse_authorization_server_metadata(
    body: bytes, content_type: str | None, *, url: str
) -> AuthorizationServerMetadata:
    """Parse an RFC 8414 §3.2 / OIDC Discovery §4.2 metadata response.

    Args:
        body: The raw body of a 200 response.
        content_type: Its ``Content-Type``.
        url: The metadata URL, named in errors.

    Returns:
        The metadata, not yet checked: call :func:`check_authorization_server_metadata`.

    Raises:
        DiscoveryError: HTML or non-JSON body, or members of the wrong type.
    """
    return _parse(AuthorizationServerMetadata, body, content_type, url)


def check_authorization_server_metadata(
    metadata: AuthorizationServerMetadata,
    *,
    expected_issuer: str,
    url: str | None = None,
    allow_missing_pkce_metadata: bool = False,
    allow_http: bool = False,
    issuer_trailing_slash: bool = False,
) -> AuthorizationServerMetadata:
    """Validate authorization server metadata before any of it is used.

    The checks, in order:

    1. ``issuer`` is identical to ``expected_issuer`` (RFC 8414 §3.3, OIDC Discovery
       §4.3; ASM-4). The only tolerance is the ``issuer_trailing_slash`` override
       (*Known disagreements* #2): one ``/`` on an otherwise empty path. The metadata's
       own ``issuer`` is then what the hub records and compares in the callback (CB-3).
    2. ``issuer`` is an ``https`` URL without query or fragment (RFC 8414 §2; ASM-5).
    3. ``authorization_endpoint`` and ``token_endpoint`` are present (RFC 8414 §2).
    4. Every endpoint is an absolute ``https`` URL (ASM-6, OAuth 2.1 §1.5).
    5. ``response_types_supported``, when present, contains ``code`` (ASM-7).
    6. ``code_challenge_methods_supported`` contains ``S256`` (MCP 2025-11-25; AUTHZ-2).
       ``allow_missing_pkce_metadata`` accepts an absent list (Entra ID, Cognito), never a
       list without ``S256``.

    Args:
        metadata: Parsed metadata.
        expected_issuer: The issuer the metadata URL was built from.
        url: The metadata URL, named in errors.
        allow_missing_pkce_metadata: Per-server relaxation for an absent PKCE list.
        allow_http: Development mode: also accept ``http`` issuer and endpoints. The
            SSRF policy in ``net/`` still decides which hosts may be reached.
        issuer_trailing_slash: Per-server override: accept ``https://as.example`` for
            ``https://as.example/`` and the reverse.

    Returns:
        ``metadata`` unchanged, for chaining.

    Raises:
        DiscoveryError: A check failed; the message names the member and the rule.
    """
    where = url or expected_issuer
    if not _issuers_equal(metadata.issuer, expected_issuer, issuer_trailing_slash):
        raise _fail(
            where,
            f"metadata issuer {metadata.issuer!r} is not the issuer "
            f"{expected_issuer!r} it was discovered for (RFC 8414 §3.3)",
        )
    issuer = urlsplit(metadata.issuer)
    if not is_http_url(metadata.issuer, allow_http=allow_http) or issuer.query:
        raise _fail(
            where, "issuer must be an https URL without query or fragment (RFC 8414 §2)"
        )
    for name in ("authorization_endpoint", "token_endpoint"):
        if getattr(metadata, name) is None:
            raise _fail(where, f"{name} is missing (RFC 8414 §2)")
    _check_endpoints(metadata, where, allow_http=allow_http)
    types = metadata.response_types_supported
    if types is not None and "code" not in types:
        raise _fail(where, "response_types_supported does not include 'code'")
    _check_pkce(metadata, where, allow_missing=allow_missing_pkce_metadata)
    return metadata


def _issuers_equal(published: str, expected: str, trailing_slash: bool) -> bool:
    if published == expected:
        return True
    if not trailing_slash:
        return False
    shorter, longer = sorted((published, expected), key=len)
    return longer == f"{shorter}/" and urlsplit(longer).path == "/"


_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "jwks_uri",
)


def _check_endpoints(
    metadata: AuthorizationServerMetadata, where: str, *, allow_http: bool
) -> None:
    for name in _ENDPOINTS:
        value: Any = getattr(metadata, name)
        if value is not None and not is_http_url(value, allow_http=allow_http):
            raise _fail(
                where,
                f"{name} must be an absolute https URL without user info or "
                "fragment (OAuth 2.1 §1.5)",
            )


def _check_pkce(
    metadata: AuthorizationServerMetadata, where: str, *, allow_missing: bool
) -> None:
    methods = metadata.code_challenge_methods_supported
    if methods is None and allow_missing:
        return
    if methods is None:
        raise _fail(
            where,
            "code_challenge_methods_supported is missing; MCP requires an "
            "authorization server to advertise S256 (RFC 7636, MCP Authorization)",
            hint="if this authorization server is known to support S256 without "
            "advertising it, enable the server's 'allow missing PKCE metadata' option",
        )
    if "S256" not in methods:
        raise _fail(
            where,
            "code_challenge_methods_supported does not include S256 (RFC 7636 §4.2)",
        )


def _fail(where: str, message: str, *, hint: str | None = None) -> DiscoveryError:
    return DiscoveryError(message, server=where, step="discovery", hint=hint)
