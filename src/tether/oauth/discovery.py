"""Where to look for metadata, and in which order.

RFC 9728 §3.1, RFC 8414 §3.1 and §5, OpenID Connect Discovery 1.0 §4; MCP 2025-11-25
*Authorization*, "Authorization Server Discovery"; requirements.md PRM-3, PRM-4, ASM-2.

Two plain functions give the URL orders. Two generators drive the probing without doing
any I/O, in the style of ``httpx.Auth.auth_flow``: each yields the next URL to GET, the
caller sends back a :class:`Fetched` (status, content type, body), and the generator
returns the parsed metadata (``StopIteration.value``; ``yield from`` gives it directly)::

    flow = protected_resource_discovery(server_url, resource_metadata=hint)
    url = next(flow)
    try:
        while True:
            response = await net.get(url)           # the hub's I/O, through net/
            url = flow.send(Fetched(response.status_code, ctype, response.content))
    except StopIteration as done:
        prm_url, prm = done.value

Probe policy (PRM-4, TETHER): a 3xx or 4xx other than 429 means "not here" and moves on;
a 200 whose body is HTML (a catch-all web page) moves on too; 429 and 5xx stop with a
retryable :class:`~tether.errors.DiscoveryError` (``details["retryable"] is True``) rather
than concluding that the server has no metadata. A 200 with JSON that fails validation
stops: the server published metadata the client MUST NOT use. Redirects are the business
of ``net/`` (SSRF-4). Network errors are raised by the caller, not here.
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from tether.errors import DiscoveryError, clean_text
from tether.oauth._wire import looks_like_html
from tether.oauth.models import (
    AuthorizationServerMetadata,
    ProtectedResourceMetadata,
    check_authorization_server_metadata,
    parse_authorization_server_metadata,
    parse_protected_resource_metadata,
)
from tether.oauth.resource import ResourceMatch, canonical_resource, check_resource

__all__ = [
    "OAUTH_AUTHORIZATION_SERVER",
    "OAUTH_PROTECTED_RESOURCE",
    "OPENID_CONFIGURATION",
    "Fetched",
    "authorization_server_discovery",
    "authorization_server_metadata_urls",
    "legacy_authorization_server_discovery",
    "legacy_authorization_server_metadata",
    "protected_resource_discovery",
    "protected_resource_metadata_urls",
]

OAUTH_PROTECTED_RESOURCE = "/.well-known/oauth-protected-resource"
"""RFC 9728 §3 well-known suffix."""
OAUTH_AUTHORIZATION_SERVER = "/.well-known/oauth-authorization-server"
"""RFC 8414 §3 well-known suffix (the only one MCP uses, ASM-3)."""
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
"""OpenID Connect Discovery 1.0 §4 suffix."""


class Fetched(BaseModel):
    """What the caller got back for one yielded URL.

    Attributes:
        status: The HTTP status code.
        content_type: The ``Content-Type`` header, if any.
        body: The response body (already size-capped by ``net/``).
    """

    model_config = ConfigDict(frozen=True)

    status: int
    content_type: str | None = None
    body: bytes = Field(default=b"", repr=False)


def _split(url: str) -> SplitResult:
    """``urlsplit``, with its ``ValueError`` (``http://x[abc]/``) as a DiscoveryError."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise DiscoveryError(
            f"{clean_text(repr(url), limit=300)} is not a valid URL",
            step="discovery",
            details={"url": url[:2000]},
        ) from exc


def _insert(url: str, suffix: str) -> str:
    """RFC 9728 §3.1 / RFC 8414 §3.1: the well-known segment goes between host and path.

    A terminating ``/`` is removed from the path first; the query is kept, the fragment
    dropped.
    """
    parts = _split(url)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, suffix + path, parts.query, ""))


def protected_resource_metadata_urls(
    server_url: str, resource_metadata: str | None = None
) -> list[str]:
    """Return the protected resource metadata URLs to try, in order (PRM-3).

    1. ``resource_metadata`` from the ``WWW-Authenticate`` challenge, when given;
    2. the path-inserted well-known URL (RFC 9728 §3.1);
    3. the root well-known URL. For a server at the root, 2 and 3 are one URL.

    Args:
        server_url: The MCP endpoint URL.
        resource_metadata: The challenge's ``resource_metadata`` parameter, if any.

    Returns:
        Distinct URLs in the order to try them.

    Raises:
        DiscoveryError: ``server_url`` cannot be split into URL parts.
    """
    parts = _split(server_url)
    candidates = [
        resource_metadata,
        _insert(server_url, OAUTH_PROTECTED_RESOURCE),
        urlunsplit((parts.scheme, parts.netloc, OAUTH_PROTECTED_RESOURCE, "", "")),
    ]
    return list(dict.fromkeys(c for c in candidates if c))


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """Return the metadata URLs for an issuer, in the MCP 2025-11-25 order (ASM-2).

    With a path (``https://as.example/tenant1``): RFC 8414 path-inserted, OIDC
    path-inserted (RFC 8414 §5), OIDC path-appended (OIDC Discovery §4). Without a path:
    RFC 8414, then OIDC.

    Args:
        issuer: The issuer identifier from ``authorization_servers``.

    Returns:
        Two or three URLs in the order to try them.

    Raises:
        DiscoveryError: The issuer (remote text, from the protected resource metadata)
            cannot be split into URL parts.
    """
    parts = _split(issuer)
    path = parts.path.rstrip("/")
    origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    if not path:
        return [origin + OAUTH_AUTHORIZATION_SERVER, origin + OPENID_CONFIGURATION]
    return [
        origin + OAUTH_AUTHORIZATION_SERVER + path,
        origin + OPENID_CONFIGURATION + path,
        origin + path + OPENID_CONFIGURATION,
    ]


def _usable(url: str, fetched: Fetched, tried: list[str]) -> bool:
    """Apply the probe policy; True when the body should be parsed."""
    status = fetched.status
    if status == 429 or status >= 500:
        raise DiscoveryError(
            f"{url} answered HTTP {status}; discovery can be retried later",
            server=url,
            step="discovery",
            details={"status": status, "retryable": True, "tried": tried},
        )
    if status != 200:
        tried.append(f"{url} → HTTP {status}")
        return False
    if looks_like_html(fetched.body, fetched.content_type):
        tried.append(f"{url} → HTML page")
        return False
    return True


def _not_found(what: str, tried: list[str]) -> DiscoveryError:
    """Nothing answered: ``details["missing"]`` tells this apart from a bad document."""
    return DiscoveryError(
        f"no {what} found; tried: " + "; ".join(tried),
        step="discovery",
        hint="enter the metadata for this server manually, or check its URL",
        details={"tried": tried, "retryable": False, "missing": True},
    )


def _origin(url: str) -> str:
    parts = _split(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), "", "", ""))


def _root_resource(server_url: str, metadata_url: str, challenged: str | None) -> str:
    """The other identifier a root well-known document may name (RFC 9728 §3.3).

    RFC 9728 §3.3: ``resource`` MUST be identical to the identifier *into which the
    well-known suffix was inserted* to build the URL the metadata came from. For the root
    well-known URL that identifier is the origin, so the origin is the exact value there
    (PRM-6 "the resource identifier used to build the well-known URL"). It does not apply
    when the URL came from the challenge: then ``resource`` MUST be the URL requested.
    Returns ``""`` when no second identifier applies.
    """
    root = _origin(server_url) + OAUTH_PROTECTED_RESOURCE
    if metadata_url != root or metadata_url == challenged:
        return ""
    return _origin(server_url)


def protected_resource_discovery(
    server_url: str,
    *,
    resource_metadata: str | None = None,
    resource_match: ResourceMatch = "exact",
    expected_resource: str | None = None,
) -> Generator[str, Fetched, tuple[str, ProtectedResourceMetadata]]:
    """Drive protected resource metadata discovery (PRM-3, PRM-4, PRM-6).

    PRM-6 (RFC 9728 §3.3): ``resource`` must be the canonical server URL; a document
    from the *root* well-known URL may instead name the origin, the identifier that
    URL is built from (see :func:`_root_resource`). The admin's ``expected_resource``
    replaces both.

    Args:
        server_url: The MCP endpoint URL.
        resource_metadata: The challenge's ``resource_metadata``, if any.
        resource_match: ``exact`` (default) or the ``prefix`` override.
        expected_resource: Admin override: the exact ``resource`` the server publishes
            (*Known disagreements* #3); else the canonical resource of ``server_url``.

    Yields:
        The next URL to GET.

    Returns:
        The URL that answered and its metadata, whose ``resource`` passed PRM-6.

    Raises:
        DiscoveryError: Retryable status, invalid metadata, resource mismatch, or no
            candidate answered.
    """
    expected = expected_resource or canonical_resource(server_url)
    tried: list[str] = []
    for url in protected_resource_metadata_urls(server_url, resource_metadata):
        fetched = yield url
        if not _usable(url, fetched, tried):
            continue
        metadata = parse_protected_resource_metadata(
            fetched.body, fetched.content_type, url=url
        )
        root = _root_resource(server_url, url, resource_metadata)
        if expected_resource or not root or metadata.resource.rstrip("/") != root:
            check_resource(
                metadata.resource, expected, match=resource_match, metadata_url=url
            )
        return url, metadata
    raise _not_found("protected resource metadata", tried)


def authorization_server_discovery(
    issuer: str,
    *,
    allow_missing_pkce_metadata: bool = False,
    allow_http: bool = False,
    issuer_trailing_slash: bool = False,
) -> Generator[str, Fetched, tuple[str, AuthorizationServerMetadata]]:
    """Drive authorization server metadata discovery for one issuer (ASM-2, ASM-4).

    Args:
        issuer: The issuer from the protected resource metadata (or pinned by an admin).
        allow_missing_pkce_metadata: See :func:`check_authorization_server_metadata`.
        allow_http: Development mode, see :func:`check_authorization_server_metadata`.
        issuer_trailing_slash: See :func:`check_authorization_server_metadata`.

    Yields:
        The next URL to GET.

    Returns:
        The URL that answered and its validated metadata.

    Raises:
        DiscoveryError: Retryable status, invalid metadata, or no candidate answered.
    """
    tried: list[str] = []
    found = yield from _first_metadata(
        issuer,
        tried,
        allow_missing_pkce_metadata=allow_missing_pkce_metadata,
        allow_http=allow_http,
        issuer_trailing_slash=issuer_trailing_slash,
    )
    if found is None:
        raise _not_found(f"authorization server metadata for {issuer}", tried)
    return found


def _first_metadata(
    issuer: str,
    tried: list[str],
    *,
    allow_missing_pkce_metadata: bool,
    allow_http: bool,
    issuer_trailing_slash: bool,
) -> Generator[str, Fetched, tuple[str, AuthorizationServerMetadata] | None]:
    for url in authorization_server_metadata_urls(issuer):
        fetched = yield url
        if not _usable(url, fetched, tried):
            continue
        metadata = parse_authorization_server_metadata(
            fetched.body, fetched.content_type, url=url
        )
        check_authorization_server_metadata(
            metadata,
            expected_issuer=issuer,
            url=url,
            allow_missing_pkce_metadata=allow_missing_pkce_metadata,
            allow_http=allow_http,
            issuer_trailing_slash=issuer_trailing_slash,
        )
        return url, metadata
    return None


def legacy_authorization_server_metadata(
    server_url: str,
) -> AuthorizationServerMetadata:
    """The MCP 2025-03-26 default endpoints for a server without metadata (ASM-9).

    MCP 2025-03-26 *Authorization* §2.3.2–2.3.3: the authorization base URL is the MCP
    server URL with its path discarded; without metadata the endpoints are
    ``/authorize``, ``/token`` and ``/register`` under it. That revision requires PKCE of
    every client (§2.1.1, OAuth 2.1), so S256 is recorded as supported.

    Args:
        server_url: The MCP endpoint URL.

    Returns:
        Metadata with the origin as issuer and the default endpoints.
    """
    base = _origin(server_url)
    return AuthorizationServerMetadata.model_validate(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "registration_endpoint": f"{base}/register",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }
    )


def legacy_authorization_server_discovery(
    server_url: str,
    *,
    allow_missing_pkce_metadata: bool = False,
    allow_http: bool = False,
    issuer_trailing_slash: bool = False,
) -> Generator[str, Fetched, tuple[str, AuthorizationServerMetadata]]:
    """MCP 2025-03-26 discovery, for a server without protected resource metadata.

    An admin opt-in (ASM-9, *Known disagreements* #15 ``legacy_endpoints``): none of
    the 2025-06-18+ revisions has this fallback. The origin of the server URL is the
    issuer; its metadata is tried as for any issuer (ASM-2) and validated as strictly
    (ASM-4: a document naming another issuer is refused, not skipped). Only when no
    candidate answers are the default endpoints used
    (:func:`legacy_authorization_server_metadata`).

    Args:
        server_url: The MCP endpoint URL.
        allow_missing_pkce_metadata: See :func:`check_authorization_server_metadata`.
        allow_http: See :func:`check_authorization_server_metadata`.
        issuer_trailing_slash: See :func:`check_authorization_server_metadata`.

    Yields:
        The next URL to GET.

    Returns:
        The URL that answered (``""`` for the defaults) and the metadata.

    Raises:
        DiscoveryError: Retryable status, or metadata that fails validation.
    """
    found = yield from _first_metadata(
        _origin(server_url),
        [],
        allow_missing_pkce_metadata=allow_missing_pkce_metadata,
        allow_http=allow_http,
        issuer_trailing_slash=issuer_trailing_slash,
    )
    if found is not None:
        return found
    metadata = legacy_authorization_server_metadata(server_url)
    check_authorization_server_metadata(
        metadata, expected_issuer=metadata.issuer, allow_http=allow_http
    )
    return "", metadata
