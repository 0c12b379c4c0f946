"""Client registration: the choice of path, dynamic registration and the CIMD document.

RFC 7591 §2, §3.1, §3.2.1, §3.2.2; draft-ietf-oauth-client-id-metadata-document-00;
MCP 2025-11-25 *Authorization*, "Client Registration Approaches"; requirements.md REG-2,
REG-6, REG-7, CIMD-1 – CIMD-7.

Left out: RFC 7592 client management (read, update, delete with the registration access
token, which is parsed and kept for later), software statements, and ``private_key_jwt``
for the CIMD client (later; CIMD-7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from tether.errors import ConfigurationError, InvalidResponse, RemoteError
from tether.oauth._wire import decode_json_object
from tether.oauth.client_auth import SUPPORTED_AUTH_METHODS, AuthMethod
from tether.oauth.models import AuthorizationServerMetadata
from tether.oauth.tokens import raise_for_oauth_error

__all__ = [
    "GRANT_TYPES",
    "RegisteredClient",
    "RegistrationMode",
    "RegistrationPath",
    "check_client_metadata_url",
    "choose_registration",
    "client_metadata_document",
    "parse_registration_response",
    "registration_request",
]

RegistrationMode = Literal["auto", "metadata_document", "dynamic", "manual"]
RegistrationPath = Literal["manual", "metadata_document", "dynamic"]
GRANT_TYPES: tuple[str, ...] = ("authorization_code", "refresh_token")
_DCR_PREFERENCE: tuple[AuthMethod, ...] = (
    "none",
    "client_secret_basic",
    "client_secret_post",
)


def check_client_metadata_url(url: str) -> str:
    """Check the URL of Tether's client ID metadata document (CIMD-1, CIMD-2).

    ``https`` with a path other than ``/``; no fragment, user info, query (TETHER) or
    ``.``/``..`` segments.

    Args:
        url: The configured document URL (also the ``client_id``).

    Returns:
        ``url`` unchanged.

    Raises:
        ConfigurationError: The URL breaks one of the rules; the message names it.
    """
    parts = urlsplit(url)
    segments = parts.path.split("/")
    problems = [
        (parts.scheme != "https", "it must use https"),
        (parts.path in ("", "/"), "it must have a path"),
        ("#" in url, "it must not have a fragment"),
        ("@" in parts.netloc, "it must not contain a user name or password"),
        (bool(parts.query), "it must not have a query"),
        ("." in segments or ".." in segments, "it must not contain . or .. segments"),
        (not parts.hostname, "it must have a host"),
    ]
    for failed, why in problems:
        if failed:
            raise ConfigurationError(
                f"the client metadata document URL {url!r} cannot be a client_id: {why}",
                hint="serve Tether over https and set its public base URL",
            )
    return url


def choose_registration(
    mode: RegistrationMode,
    *,
    metadata: AuthorizationServerMetadata,
    has_manual_client: bool,
    client_metadata_url: str | None,
    redirect_uri: str,
) -> RegistrationPath:
    """Choose how Tether gets a client id at this AS (REG-2, G-4).

    ``auto``: a manually registered client; else the metadata document when the AS
    advertises ``client_id_metadata_document_supported`` (CIMD-6) and a valid https
    document URL exists; else dynamic registration when the AS has a
    ``registration_endpoint`` (never a guessed ``/register``, ASM-8); else a
    configuration error that shows the redirect URI to register. The other modes force
    one path (``dynamic`` is the ``prefer_dcr`` override).

    Args:
        mode: The server's registration setting.
        metadata: Validated AS metadata.
        has_manual_client: Whether an admin configured a client id for this AS.
        client_metadata_url: Tether's document URL, if Tether serves one.
        redirect_uri: Tether's callback URL, shown in the error.

    Returns:
        ``manual``, ``metadata_document`` or ``dynamic``.

    Raises:
        ConfigurationError: The forced path is impossible, or ``auto`` found none.
    """
    issuer = metadata.issuer
    if mode == "manual" or (mode == "auto" and has_manual_client):
        if not has_manual_client:
            raise _manual_required(issuer, redirect_uri, "no client id is configured")
        return "manual"
    if mode == "metadata_document":
        if client_metadata_url is None:
            raise ConfigurationError(
                "registration is set to the client metadata document, but Tether has "
                "no public base URL to serve it from",
                server=issuer,
            )
        check_client_metadata_url(client_metadata_url)
        return "metadata_document"
    cimd = metadata.client_id_metadata_document_supported
    if mode == "auto" and cimd and client_metadata_url is not None:
        check_client_metadata_url(client_metadata_url)
        return "metadata_document"
    if metadata.registration_endpoint is not None:
        return "dynamic"
    if mode == "dynamic":
        raise ConfigurationError(
            f"{issuer} offers no dynamic client registration (no registration_endpoint)",
            server=issuer,
            hint="switch the server to automatic or manual registration",
        )
    raise _manual_required(
        issuer,
        redirect_uri,
        "it offers neither client metadata documents nor dynamic registration",
    )


def _manual_required(issuer: str, redirect_uri: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"register a client manually at {issuer}: {why}",
        server=issuer,
        hint=f"register the redirect URI {redirect_uri} with the authorization server, "
        "then enter the client id (and secret) on the server's settings",
        details={"issuer": issuer, "redirect_uri": redirect_uri},
    )


def client_metadata_document(
    client_id_url: str,
    *,
    client_name: str,
    redirect_uris: Sequence[str],
    client_uri: str | None = None,
    logo_uri: str | None = None,
) -> dict[str, Any]:
    """The JSON Tether serves at its client ID metadata document URL (CIMD-3 – CIMD-7).

    ``client_id`` equals the document URL exactly (CIMD-4); no secret and
    ``token_endpoint_auth_method: none`` (CIMD-5).

    Args:
        client_id_url: The document's own URL, checked by
            :func:`check_client_metadata_url`.
        client_name: Shown by the AS on its consent screen.
        redirect_uris: Exactly the callback URL(s) Tether sends.
        client_uri: Optional home page.
        logo_uri: Optional logo.

    Returns:
        The document, ready for ``json.dumps``.

    Raises:
        ConfigurationError: The URL is not a valid client id, or no redirect URI.
    """
    check_client_metadata_url(client_id_url)
    if not redirect_uris:
        raise ConfigurationError("the client metadata document needs a redirect URI")
    document: dict[str, Any] = {
        "client_id": client_id_url,
        "client_name": client_name,
        "redirect_uris": list(redirect_uris),
        "grant_types": list(GRANT_TYPES),
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }
    if client_uri:
        document["client_uri"] = client_uri
    if logo_uri:
        document["logo_uri"] = logo_uri
    return document


def registration_request(
    metadata: AuthorizationServerMetadata,
    *,
    client_name: str,
    redirect_uris: Sequence[str],
    scopes: Sequence[str] = (),
    preferred_auth_methods: Sequence[AuthMethod] = _DCR_PREFERENCE,
) -> dict[str, Any]:
    """Build the RFC 7591 §3.1 registration body (REG-6).

    ``token_endpoint_auth_method`` is always explicit (RFC 7591 §2 would default it to
    ``client_secret_basic``): the first of ``preferred_auth_methods`` the AS lists; when
    it lists none, ``client_secret_basic``, the RFC 8414 §2 default. The default
    preference starts with ``none`` (a public client with PKCE, as the reference
    registers), which avoids secrets that expire (REG-11).

    Args:
        metadata: Validated AS metadata.
        client_name: The client name (some ASes allow-list it, *Known disagreements* #9).
        redirect_uris: Tether's callback URL(s).
        scopes: Scopes to put in the body; the authorization request carries them anyway.
        preferred_auth_methods: Methods to ask for, best first.

    Returns:
        The JSON body to POST to ``registration_endpoint``.

    Raises:
        ConfigurationError: The AS lists only methods Tether does not implement.
    """
    supported = metadata.token_endpoint_auth_methods_supported
    if not supported:
        method: str = "client_secret_basic"
    else:
        listed = [m for m in preferred_auth_methods if m in supported]
        if not listed:
            raise ConfigurationError(
                f"{metadata.issuer} supports only token endpoint auth methods Tether "
                f"does not implement ({', '.join(supported)})",
                server=metadata.issuer,
                details={"issuer": metadata.issuer, "methods": ", ".join(supported)},
            )
        method = listed[0]
    body: dict[str, Any] = {
        "client_name": client_name,
        "redirect_uris": list(redirect_uris),
        "grant_types": list(GRANT_TYPES),
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        "application_type": "web",  # MUST in MCP 2026-07-28; web: a remote service
    }
    if scopes:
        body["scope"] = " ".join(scopes)
    return body


class RegisteredClient(BaseModel):
    """A checked RFC 7591 §3.2.1 registration response.

    Attributes:
        client_id: REQUIRED.
        client_secret: Issued secret (masked), if any.
        token_endpoint_auth_method: The method the AS registered (use it, REG-7).
        redirect_uris: As registered (contains Tether's callback).
        client_id_issued_at: When the id was issued.
        client_secret_expires_at: When the secret expires; ``None`` means never.
        registration_access_token: RFC 7592 token (masked), if any.
        registration_client_uri: RFC 7592 management URL, if any.
    """

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: AuthMethod
    redirect_uris: tuple[str, ...] = ()
    client_id_issued_at: datetime | None = None
    client_secret_expires_at: datetime | None = None
    registration_access_token: SecretStr | None = Field(default=None, repr=False)
    registration_client_uri: str | None = None


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")

    client_id: str = Field(min_length=1)
    client_secret: str | None = None
    token_endpoint_auth_method: str | None = None
    redirect_uris: tuple[str, ...] | None = None
    client_id_issued_at: int | None = None
    client_secret_expires_at: int | None = None
    registration_access_token: str | None = None
    registration_client_uri: str | None = None


def _epoch(value: int | None) -> datetime | None:
    # RFC 7591 §3.2.1: seconds since the epoch; client_secret_expires_at 0 = never.
    # A time no datetime can hold (1e20) is read as "never" too: REG-11 re-registers
    # on invalid_client anyway.
    if not value:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_registration_response(
    status: int,
    body: bytes,
    content_type: str | None,
    *,
    url: str,
    redirect_uri: str,
    requested_auth_method: str,
    supported_auth_methods: Sequence[str] = (),
) -> RegisteredClient:
    """Check a registration response before it is used (RFC 7591 §3.2.1, §3.2.2; REG-7).

    Checks: status 200/201 (a §3.2.2 error body becomes an ``OAuthError`` with the code,
    e.g. ``invalid_redirect_uri``); ``client_id`` present; the auth method (returned,
    else the requested one) is implemented; a secret method came with a secret; the
    returned ``redirect_uris``, when present, contain ``redirect_uri`` (G-14). A secret
    without ``client_secret_expires_at`` is taken as non-expiring: the field is REQUIRED,
    but an AS that forgets it costs nothing, as ``invalid_client`` triggers
    re-registration anyway (REG-11).

    What was issued is believed over what was echoed: a ``client_secret`` issued with
    ``token_endpoint_auth_method: none`` (Figma does this) means the client is
    confidential, so a secret method is used - ``client_secret_post``, unless
    ``client_secret_basic`` is the only secret method the AS lists (RFC 8414 §2).

    Args:
        status: HTTP status.
        body: Raw body.
        content_type: Its ``Content-Type``.
        url: The registration endpoint, named in errors.
        redirect_uri: Tether's callback URL.
        requested_auth_method: The method sent in the request.
        supported_auth_methods: The AS's ``token_endpoint_auth_methods_supported``.

    Returns:
        The registered client.

    Raises:
        OAuthError: An RFC 7591 §3.2.2 error body.
        RemoteError: Another non-success status (``details["status"]``).
        InvalidResponse: HTML/non-JSON body or a registration Tether cannot use.
    """
    members = _decode(status, body, content_type, url)
    try:
        response = _Response.model_validate(members)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        raise _unusable(url, f"has missing or malformed members: {fields}") from exc
    method = response.token_endpoint_auth_method or requested_auth_method
    if method not in SUPPORTED_AUTH_METHODS:
        raise _unusable(url, f"assigns the unsupported auth method {method!r}")
    auth_method: AuthMethod = next(m for m in SUPPORTED_AUTH_METHODS if m == method)
    if auth_method == "none" and response.client_secret:
        auth_method = _secret_method(supported_auth_methods)
    if auth_method != "none" and not response.client_secret:
        raise _unusable(url, f"assigns {method} but issued no client_secret")
    uris = response.redirect_uris
    if uris is not None and redirect_uri not in uris:
        raise _unusable(url, f"does not register the redirect URI {redirect_uri}")
    return RegisteredClient(
        client_id=response.client_id,
        client_secret=_maybe_secret(response.client_secret),
        token_endpoint_auth_method=auth_method,
        redirect_uris=uris if uris is not None else (redirect_uri,),
        client_id_issued_at=_epoch(response.client_id_issued_at),
        client_secret_expires_at=_epoch(response.client_secret_expires_at),
        registration_access_token=_maybe_secret(response.registration_access_token),
        registration_client_uri=response.registration_client_uri,
    )


def _decode(
    status: int, body: bytes, content_type: str | None, url: str
) -> Mapping[str, Any]:
    ok = status in (200, 201)
    try:
        members = decode_json_object(
            body,
            content_type,
            url=url,
            error=InvalidResponse,
            what="registration response",
            step="registration",
        )
    except InvalidResponse:
        if ok:
            raise
        members = {}
    raise_for_oauth_error(members, url=url, step="registration")
    if not ok:
        raise RemoteError(
            f"client registration answered HTTP {status}",
            server=url,
            step="registration",
            details={"status": status},
        )
    return members


def _secret_method(supported: Sequence[str]) -> AuthMethod:
    offered = {"client_secret_post", "client_secret_basic"} & set(supported)
    return (
        "client_secret_basic"
        if offered == {"client_secret_basic"}
        else ("client_secret_post")
    )


def _maybe_secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def _unusable(url: str, why: str) -> InvalidResponse:
    return InvalidResponse(
        f"the registration response {why} (RFC 7591 §3.2.1)",
        server=url,
        step="registration",
    )
