"""What a probe may be told: every per-server setting plus the probe's switches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.errors import UsageError

__all__ = [
    "Authorizer",
    "ProbeOptions",
    "Progress",
    "check_options",
    "server_spec",
]

Progress = Callable[[str], None]
"""Told what the probe is about to wait for (``asking the server``, ``token``, …)."""

Authorizer = Callable[[str, str], Awaitable[Mapping[str, str | Sequence[str]]]]
"""``(authorization_url, redirect_uri) -> callback query parameters`` (a person's step)."""

SERVER_NAME = "probe"


@dataclass(frozen=True)
class ProbeOptions:
    """Everything a probe may be told: every per-server setting plus probe switches.

    Attributes:
        url: The MCP endpoint.
        scopes: Space-separated scopes to request (overrides challenge/PRM scopes).
        authorization_params: Extra authorization parameters; ``None`` removes a default
            (e.g. ``{"resource": None}``).
        token_params: Extra token parameters; ``None`` removes a default.
        registration: ``auto``, ``metadata_document``, ``dynamic`` or ``manual``.
        client_id: A pre-registered client id (manual registration).
        client_secret: Its secret; stored in the in-memory store only.
        token_auth_method: Override the token endpoint authentication method.
        allow_missing_pkce_metadata: Accept an AS that does not advertise S256.
        require_refresh_token: Fail when the AS grants no refresh token.
        allow_networks: Hosts or CIDRs allowed although not public (e.g. loopback):
            the probed server's own allowlist.
        installation_allow_networks: The installation's allowlist
            (``TETHER_ALLOW_NETWORKS``), merged with ``allow_networks`` for every
            request of the probe exactly as for a configured server's.
        installation_ca_bundle: The installation's CA bundle (``TETHER_CA_BUNDLE``),
            used when ``ca_bundle`` is not given.
        ca_bundle: PEM file of CAs to trust.
        timeout: Seconds per step (the server's ``timeout_seconds``).
        authorization_server: Use this issuer instead of the PRM's first one.
        follow_redirects: Complete the authorization headlessly (AS that approves at once).
        authorizer: Otherwise, how to get the callback (e.g. print and wait); without
            either, the probe stops after printing the authorization URL.
        redirect_uri: The callback URL to register and send.
        client_metadata_url: Tether's client ID metadata document URL (enables CIMD).
        client_name: ``client_name`` for registration.
        list_tools: Run ``tools/list`` after connecting.
        call: A tool to call afterwards, with ``call_args``.
        call_args: Its arguments.
        step_up_retries: Re-authorizations allowed on ``insufficient_scope``.
        call_if_listed: Without ``call``, call this tool (no arguments) when listed.
        resource_match: The server's ``resource_match`` override (``exact``/``prefix``).
        resource_expected: The server's ``resource_expected`` override.
        legacy_endpoints: The server's ``legacy_endpoints`` override (ASM-9).
        elicitation: ``decline`` (default) or ``defaults``: accept form elicitations
            with the schema's default values (:func:`tether.accept_defaults`).
        reauthorize_retries: Re-authorizations allowed when a connected server asks for
            authorization again (e.g. its authorization server changed).
        grant: ``authorization_code`` (browser), ``client_credentials`` or
            ``enterprise`` (no browser).
        private_key_pem: PEM private key for ``private_key_jwt`` (in-memory only).
        signing_algorithm: Its JWS algorithm (else the key's).
        idp_token_endpoint: Enterprise IdP token endpoint (``enterprise``).
        idp_client_id: Tether's client id at the IdP.
        idp_client_secret: Its secret (in-memory only).
        id_token: The user's ID token from the IdP (``enterprise``).
        assertion: The workload's JWT (``jwt_bearer``; in-memory only).
        dpop: The server's ``dpop`` setting (``auto``, ``always``, ``never``).
        protocol_version: The MCP revision to try first (e.g. ``2026-07-28``: the
            stateless revision, without an ``initialize`` even in the challenge);
            ``None`` detects it.
        tool_calls: Without ``call``, these ``(tool, arguments)`` calls, in order.
        call_all_listed: Without ``call`` or ``tool_calls``, call every tool the hub
            lists (no arguments): tools it leaves out are never called.
        schema_echo: ``(echo_tool, tool)``: call ``echo_tool`` with ``{"schema": <the
            inputSchema of tool as the hub lists it>}`` (JSON Schema preservation).
        skills: After the tools, ``list`` the server's skills (SEP-2640; no file is
            read), or ``load`` each one: its ``SKILL.md`` and then its supporting
            files, every file verified against the listing.
        progress: Told, before each step that waits on the network or a person,
            what it waits for (the CLI shows it on a terminal).
    """

    url: str
    scopes: str | None = None
    authorization_params: Mapping[str, str | None] = field(default_factory=dict)
    token_params: Mapping[str, str | None] = field(default_factory=dict)
    registration: str = "auto"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_auth_method: str | None = None
    allow_missing_pkce_metadata: bool = False
    require_refresh_token: bool = False
    allow_networks: Sequence[str] = ()
    installation_allow_networks: Sequence[str] = ()
    installation_ca_bundle: str | None = None
    ca_bundle: str | None = None
    timeout: int = 30
    authorization_server: str | None = None
    follow_redirects: bool = False
    authorizer: Authorizer | None = field(default=None, repr=False)
    redirect_uri: str = "http://127.0.0.1:8470/oauth/callback"
    client_metadata_url: str | None = None
    client_name: str = "Tether probe"
    list_tools: bool = True
    call: str | None = None
    call_args: Mapping[str, Any] = field(default_factory=dict)
    step_up_retries: int = 1
    call_if_listed: str | None = None
    resource_match: Literal["exact", "prefix"] = "exact"
    resource_expected: str | None = None
    legacy_endpoints: bool = False
    elicitation: Literal["decline", "defaults"] = "decline"
    reauthorize_retries: int = 0
    grant: Literal[
        "authorization_code", "client_credentials", "enterprise", "jwt_bearer"
    ] = "authorization_code"
    private_key_pem: str | None = field(default=None, repr=False)
    signing_algorithm: str | None = None
    idp_token_endpoint: str | None = None
    idp_client_id: str | None = None
    idp_client_secret: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    assertion: str | None = field(default=None, repr=False)
    dpop: Literal["auto", "always", "never"] = "never"
    protocol_version: str | None = None
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = ()
    call_all_listed: bool = False
    schema_echo: tuple[str, str] | None = None
    skills: Literal["off", "list", "load"] = "off"
    progress: Progress | None = field(default=None, repr=False, compare=False)

    def note(self, what: str) -> None:
        """Tell :attr:`progress` what comes next."""
        if self.progress is not None:
            self.progress(what)

    def fields(self) -> dict[str, Any]:
        """Every field by name (to build a changed copy)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def server_spec(options: ProbeOptions) -> dict[str, Any]:
    """The probed server as ``tether servers add`` would register it (OAuth)."""
    return {
        "name": SERVER_NAME,
        "url": options.url,
        "timeout_seconds": options.timeout,
        "auth_mode": "oauth",
        "allow_networks": list(options.allow_networks),
        "ca_bundle": options.ca_bundle,
        "oauth": {
            "registration": options.registration,
            "client_id": options.client_id,
            "client_secret_credential_id": None,
            "token_auth_method": options.token_auth_method,
            "scopes": options.scopes,
            "authorization_params": dict(options.authorization_params),
            "token_params": dict(options.token_params),
            "require_refresh_token": options.require_refresh_token,
            "allow_missing_pkce_metadata": options.allow_missing_pkce_metadata,
            "authorization_server": options.authorization_server,
            "resource_match": options.resource_match,
            "resource_expected": options.resource_expected,
            "legacy_endpoints": options.legacy_endpoints,
            "grant": options.grant,
            "signing_algorithm": options.signing_algorithm,
            "idp_token_endpoint": options.idp_token_endpoint,
            "idp_client_id": options.idp_client_id,
            "dpop": options.dpop,
        },
    }


def check_options(options: ProbeOptions) -> None:
    """Reject contradictory options before any request.

    The redirect URI is checked when the probe opens its Tether (a failed ``setup``
    step); the CLI checks it earlier, as a usage error.

    Raises:
        UsageError: e.g. a client secret without a client id.
    """
    if options.client_secret is not None and options.client_id is None:
        raise UsageError("a client secret needs --client-id")
    if options.registration == "manual" and options.client_id is None:
        raise UsageError("manual registration needs --client-id")
