"""``tether probe``: run the whole connect flow against one MCP server and explain it.

A headless diagnostic (issue #4). It builds a throw-away :class:`~tether.hub.tether.Tether`
on an in-memory store and drives the *same* hub code the service runs (discovery,
registration, the authorization start and callback, the code exchange, the MCP session)
step by step, recording for each step what happened, which URLs were tried with what
answer, and — on failure — the Tether error's code, message and hint.

Nothing secret is ever put in a report: no client secret, access or refresh token,
authorization code, PKCE verifier or ``state``; only method, URL, status and content type
of each request.

The library never reads the environment; :mod:`tether.cli.probe` turns options and (in
conformance mode) the suite's variables into :class:`ProbeOptions`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether.errors import (
    AuthorizationRequired,
    ConfigurationError,
    StepUpRequired,
    TetherError,
    UsageError,
    exit_code,
)
from tether.hub.context import HubConfig, profile_of
from tether.hub.discovery import as_metadata, unauthenticated_challenge
from tether.hub.tether import Tether
from tether.mcp.elicitation import accept_defaults
from tether.net.fetch import Fetcher, HttpResponse, NetworkProfile
from tether.net.policy import NetworkPolicy
from tether.oauth.callback import CallbackParams
from tether.oauth.challenge import BearerChallenge
from tether.oauth.redirect_uri import check_redirect_uri
from tether.store.base import DiscoveryRecord, ServerRecord
from tether.store.crypto import KeyRing
from tether.store.factory import open_stores

__all__ = [
    "Authorizer",
    "ProbeOptions",
    "ProbeReport",
    "ProbeStep",
    "RecordingFetcher",
    "probe",
]

PROBE_USER = "probe"
"""The initiator of the probe's own connects (every start names one)."""

StepStatus = Literal["ok", "failed", "skipped"]
Authorizer = Callable[[str, str], Awaitable[CallbackParams]]
"""``(authorization_url, redirect_uri) -> callback query parameters`` (a person's step)."""

_SERVER_NAME = "probe"
_MASK = "***"
_SECRET_PARAMS = frozenset(
    {"state", "code", "code_verifier", "client_secret", "access_token", "refresh_token"}
)


# --------------------------------------------------------------------- data


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
            with the schema's default values (:func:`~tether.mcp.elicitation.accept_defaults`).
        reauthorize_retries: Re-authorizations allowed when a connected server asks for
            authorization again (e.g. its authorization server changed).
        grant: ``authorization_code`` (browser), ``client_credentials`` or
            ``enterprise`` (no browser; :mod:`tether.hub.machine`).
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


@dataclass(frozen=True)
class Request:
    """One HTTP request the probe made (never a body)."""

    step: str
    method: str
    url: str
    status: int | None
    content_type: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "content_type": self.content_type,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class ProbeStep:
    """The outcome of one step.

    Attributes:
        name: ``challenge``, ``discovery``, ``registration``, ``authorization``,
            ``token``, ``tools``, ``call``.
        status: ``ok``, ``failed`` or ``skipped``.
        summary: One line.
        details: Findings (verdicts, values; never secrets).
        requests: The HTTP requests made in this step.
        error: ``{code, message, hint, ...}`` of the Tether error when failed.
        exit_code: The CLI exit code of that error.
    """

    name: str
    status: StepStatus = "ok"
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    error: dict[str, Any] | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "requests": [r.to_dict() for r in self.requests],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class ProbeReport:
    """Every step of one probe, in order."""

    url: str
    steps: list[ProbeStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return all(step.status != "failed" for step in self.steps)

    @property
    def failed_step(self) -> ProbeStep | None:
        """The first failing step."""
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the first failing step's error."""
        step = self.failed_step
        return 0 if step is None else (step.exit_code or 1)

    def step(self, name: str) -> ProbeStep | None:
        """The (last) step of that name."""
        return next((s for s in reversed(self.steps) if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        failed = self.failed_step
        return {
            "url": self.url,
            "ok": self.ok,
            "failed_step": failed.name if failed else None,
            "exit_code": self.exit_code,
            "steps": [s.to_dict() for s in self.steps],
        }


# --------------------------------------------------------------------- masking


def mask_url(url: str) -> str:
    """The URL with secret-bearing query parameters replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [
        (k, _MASK if k in _SECRET_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(pairs, safe=":/* "), "")
    )


def mask_params(params: CallbackParams) -> dict[str, str | list[str]]:
    """Callback parameters with the code and state masked (every value of a repeat)."""
    return {
        k: (_MASK if k in _SECRET_PARAMS else v)
        if isinstance(v, str)
        else [_MASK if k in _SECRET_PARAMS else x for x in v]
        for k, v in params.items()
    }


# --------------------------------------------------------------------- seams


class RecordingFetcher(Fetcher):
    """The hub's :class:`~tether.net.fetch.Fetcher`, remembering every request it sent.

    Records ``(step, method, url, status, content_type)``; never headers or bodies.
    """

    def __init__(self, policy: NetworkPolicy, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self.log: list[Request] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        profile: NetworkProfile,
        server: str | None,
        step: str,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> HttpResponse:
        """Send through the real fetcher and record the outcome."""
        try:
            response = await super().request(
                method,
                url,
                profile=profile,
                server=server,
                step=step,
                headers=headers,
                form=form,
                json_body=json_body,
            )
        except TetherError as exc:
            self.log.append(Request(step, method, mask_url(url), None, "", exc.code))
            raise
        self.log.append(
            Request(step, method, mask_url(url), response.status, response.content_type)
        )
        return response

    def take(self) -> list[Request]:
        """The requests recorded since the last call."""
        out, self.log = self.log, []
        return out


# --------------------------------------------------------------------- the probe


def _fail(step: ProbeStep, exc: TetherError) -> None:
    step.status = "failed"
    step.error = exc.to_dict()
    step.exit_code = exit_code(exc)
    step.summary = exc.message
    if exc.hint:
        step.details.setdefault("fix", exc.hint)


def _server_spec(options: ProbeOptions, scopes: str | None) -> dict[str, Any]:
    return {
        "name": _SERVER_NAME,
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
            "scopes": scopes,
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


def _discovery_details(
    record: DiscoveryRecord, options: ProbeOptions
) -> dict[str, Any]:
    meta = as_metadata(record)
    methods: list[str] = list(meta.code_challenge_methods_supported or [])
    if "S256" in methods:
        pkce = "S256 advertised"
    elif options.allow_missing_pkce_metadata:
        pkce = "S256 not advertised; accepted because allow_missing_pkce_metadata is on"
    else:  # pragma: no cover - discovery refuses this before we get here
        pkce = "S256 not advertised"
    registration = []
    if meta.client_id_metadata_document_supported:
        registration.append("client ID metadata document")
    if meta.registration_endpoint:
        registration.append("dynamic registration")
    if record.resource_metadata_url is None:
        verdict = "no protected resource metadata: the server URL is the resource"
    else:
        verdict = f"PRM resource {record.resource} accepted for {options.url}"
    return {
        "protected_resource_metadata": record.resource_metadata_url,
        "resource": record.resource,
        "resource_verdict": verdict,
        "authorization_servers": list(record.authorization_servers),
        "scopes_supported": list(record.scopes_supported),
        "issuer": record.issuer,
        "as_metadata": record.as_metadata_url
        or "none: MCP 2025-03-26 default endpoints (legacy_endpoints)",
        "issuer_verdict": f"metadata issuer equals {record.issuer}",
        "pkce": pkce,
        "iss_parameter": "supported (RFC 9207)"
        if meta.authorization_response_iss_parameter_supported
        else "not advertised",
        "cimd_supported": bool(meta.client_id_metadata_document_supported),
        "registration_endpoint": meta.registration_endpoint,
        "registration_paths": registration or ["manual only"],
        "token_endpoint_auth_methods": list(
            meta.token_endpoint_auth_methods_supported or []
        ),
    }


async def probe(options: ProbeOptions) -> ProbeReport:
    """Run the connect flow against ``options.url`` and report every step.

    Never raises a :class:`~tether.errors.TetherError`: failures end the probe with a
    failed step carrying the error's code, message and hint.
    """
    report = ProbeReport(url=options.url)
    try:  # the installation's allowlist; the server's own is merged per request
        policy = NetworkPolicy.from_allowlist(options.installation_allow_networks)
        check_redirect_uri(options.redirect_uri)
        fetcher = RecordingFetcher(
            policy,
            user_agent=f"{options.client_name} (Tether)",
            ca_bundle=options.installation_ca_bundle,
        )
    except TetherError as exc:
        step = ProbeStep("setup")
        _fail(step, exc)
        report.steps.append(step)
        return report
    try:
        stores = await open_stores("memory://", KeyRing.generate())
    except TetherError as exc:  # pragma: no cover - memory store does not fail
        step = ProbeStep("setup")
        _fail(step, exc)
        report.steps.append(step)
        await fetcher.aclose()
        return report
    tether = Tether(
        stores=stores,
        fetcher=fetcher,
        config=HubConfig(
            redirect_uri=options.redirect_uri,
            client_metadata_url=options.client_metadata_url,
            client_name=options.client_name,
            elicitation=accept_defaults if options.elicitation == "defaults" else None,
        ),
    )
    try:
        await tether.start()
        await _run(tether, fetcher, options, report)
    finally:
        await tether.aclose()
    return report


async def _run(
    tether: Tether,
    fetcher: RecordingFetcher,
    options: ProbeOptions,
    report: ProbeReport,
) -> None:
    steps = report.steps
    profile = NetworkProfile(
        timeout=float(options.timeout),
        allow_networks=tuple(options.allow_networks),
        ca_bundle=options.ca_bundle,
    )

    # 1. challenge: does the server ask for authorization, and how?
    step = ProbeStep("challenge")
    steps.append(step)
    try:
        answer = await unauthenticated_challenge(
            fetcher,
            options.url,
            profile=profile,
            server=options.url,
            protocol_version=options.protocol_version,
        )
    except TetherError as exc:
        step.requests = fetcher.take()
        _fail(step, exc)
        return
    step.requests = fetcher.take()
    challenge = answer.challenge
    needs_auth = answer.needs_auth
    if needs_auth:
        step.summary = f"HTTP {answer.status}: the server wants a token"
        step.details = {
            "status": answer.status,
            "bearer_challenge": challenge is not None,
            "resource_metadata": challenge.resource_metadata if challenge else None,
            "scope": list(challenge.scope) if challenge else [],
        }
    else:
        step.summary = (
            f"HTTP {answer.status} without authorization: no OAuth needed"
            if answer.status < 400
            else f"HTTP {answer.status}: not an authorization challenge"
        )
        step.details = {"status": answer.status, "content_type": answer.content_type}

    # 2. the server record (same validation as `tether servers add`)
    spec = _server_spec(options, options.scopes)
    if not needs_auth:
        spec["auth_mode"] = "none"
        spec["oauth"] = {}
    setup = ProbeStep("configuration")
    try:
        if options.client_secret is not None:
            cred = await tether.credentials.create(
                "probe-client-secret", options.client_secret, actor="probe"
            )
            spec["oauth"]["client_secret_credential_id"] = cred.id
        await _machine_credentials(tether, options, spec["oauth"])
        server = await tether.servers.create(spec, actor="probe")
    except TetherError as exc:
        steps.append(setup)
        _fail(setup, exc)
        return

    if needs_auth:
        if not await _oauth(tether, fetcher, options, report, server, challenge):
            return
        server = await tether.servers.get(server.id)
    else:
        for name in ("discovery", "registration", "authorization", "token"):
            steps.append(
                ProbeStep(name, "skipped", "the server did not ask for authorization")
            )
    await _tools(tether, fetcher, options, report, server)
    if options.skills != "off" and report.failed_step is None:
        await _skills(tether, options, report, server)


async def _oauth(
    tether: Tether,
    fetcher: RecordingFetcher,
    options: ProbeOptions,
    report: ProbeReport,
    server: ServerRecord,
    challenge: BearerChallenge | None,
) -> bool:
    """The first connect: discovery and registration are reported as steps of their own."""
    if options.grant != "authorization_code":
        return await _machine(tether, fetcher, options, report, server, challenge)
    return await _authorize(
        tether, fetcher, options, report, server, challenge=challenge, first=True
    )


async def _machine_credentials(
    tether: Tether, options: ProbeOptions, oauth: dict[str, Any]
) -> None:
    """Store the probe's key, IdP secret as in-memory credentials the server names."""
    for field_name, value, label in (
        ("private_key_credential_id", options.private_key_pem, "private-key"),
        ("idp_client_secret_credential_id", options.idp_client_secret, "idp-secret"),
        ("assertion_credential_id", options.assertion, "workload-jwt"),
    ):
        if value is not None:
            cred = await tether.credentials.create(
                f"probe-{label}", value, actor="probe"
            )
            oauth[field_name] = cred.id


async def _machine(
    tether: Tether,
    fetcher: RecordingFetcher,
    options: ProbeOptions,
    report: ProbeReport,
    server: ServerRecord,
    challenge: BearerChallenge | None,
) -> bool:
    """Client credentials or enterprise-managed authorization: no browser step.

    Reported as ``discovery``, (``token_exchange`` at the IdP for ``enterprise``) and
    ``token``; the step that failed carries the error.
    """
    error: TetherError | None = None
    info = None
    try:
        if options.grant == "enterprise":
            info = await tether.connect_enterprise(
                server.id, id_token=options.id_token, challenge=challenge
            )
        else:
            info = await tether.connect_machine(server.id, challenge=challenge)
    except TetherError as exc:
        error = exc
    names = [
        "discovery",
        *(["token_exchange"] if options.grant == "enterprise" else []),
    ]
    names.append("token")
    by_step: dict[str, list[Request]] = {name: [] for name in names}
    for req in fetcher.take():
        name = "discovery" if req.step == "challenge" else req.step
        by_step.setdefault(name if name in by_step else "token", []).append(req)
    failed_at = (error.step or "token") if error is not None else None
    if failed_at not in by_step:
        failed_at = "token"
    for name in names:
        step = ProbeStep(name, requests=by_step[name])
        report.steps.append(step)
        if error is not None and failed_at == name:
            _fail(step, error)
            return False
        if name == "discovery":
            record = await tether.stores.discovery.get(server.id)
            if record is not None:
                step.details = _discovery_details(record, options)
                step.summary = f"authorization server {record.issuer}"
        elif name == "token_exchange":
            step.summary = "ID-JAG issued by the IdP"
        elif info is not None:
            step.summary = f"connected with the {options.grant} grant"
            step.details = {
                "scopes": list(info.scopes),
                "expires_at": info.expires_at.isoformat() if info.expires_at else None,
                "refresh_token": "granted" if info.has_refresh_token else "none",
                "issuer": info.issuer,
            }
    return True


def _split(requests: list[Request]) -> dict[str, list[Request]]:
    """The requests of ``Tether.connect`` by probe step."""
    out: dict[str, list[Request]] = {"discovery": [], "registration": []}
    for req in requests:
        name = "discovery" if req.step == "challenge" else req.step
        out.setdefault(name if name in out else "authorization", []).append(req)
    return out


async def _setup_steps(
    tether: Tether,
    options: ProbeOptions,
    report: ProbeReport,
    server: ServerRecord,
    requests: dict[str, list[Request]],
    error: TetherError | None,
) -> bool:
    """Discovery and registration steps of the hub's connect start; False if one failed."""
    failed_at = error.step if error is not None else None
    step = ProbeStep("discovery", requests=requests["discovery"])
    report.steps.append(step)
    if failed_at == "discovery" and error is not None:
        _fail(step, error)
        tried = error.details.get("tried")
        if tried:
            step.details["tried"] = tried
        return False
    record = await tether.stores.discovery.get(server.id)
    if record is None:  # the connect failed before discovery (e.g. blocked URL)
        if error is not None:
            _fail(step, error)
        return False
    step.details = _discovery_details(record, options)
    step.summary = f"authorization server {record.issuer}"
    step = ProbeStep("registration", requests=requests["registration"])
    report.steps.append(step)
    if failed_at == "registration" and error is not None:
        _fail(step, error)
        return False
    registration = await tether.stores.registrations.get(server.id, record.issuer)
    if registration is None:
        if error is not None:
            _fail(step, error)
        return False
    step.summary = f"{registration.source} client {registration.client_id}"
    step.details = {
        "source": registration.source,
        "client_id": registration.client_id,
        "token_endpoint_auth_method": registration.auth_method,
        "client_secret": "held (not shown)" if registration.client_secret else None,
        "redirect_uri": registration.redirect_uri,
    }
    return True


async def _authorize(
    tether: Tether,
    fetcher: RecordingFetcher,
    options: ProbeOptions,
    report: ProbeReport,
    server: ServerRecord,
    *,
    challenge: BearerChallenge | None = None,
    first: bool = False,
) -> bool:
    """Start, complete the user step, exchange the code (also used for step-up).

    ``Tether.connect`` does what a configured server's connect does: without a
    challenge it asks the server itself, then discovers and registers.
    """
    steps = report.steps
    error: TetherError | None = None
    try:
        started = await tether.connect(server.id, user=PROBE_USER, challenge=challenge)
    except TetherError as exc:
        error = exc
    requests = _split(fetcher.take())
    if first and not await _setup_steps(
        tether, options, report, server, requests, error
    ):
        return False
    step = ProbeStep("authorization", requests=requests.get("authorization", []))
    if not first:
        step.requests = [r for reqs in requests.values() for r in reqs]
    steps.append(step)
    if error is not None:
        _fail(step, error)
        return False
    query = dict(parse_qsl(urlsplit(started.authorization_url).query))
    step.details = {
        "authorization_url": mask_url(started.authorization_url),
        "scope": query.get("scope"),
        "resource": query.get("resource"),
        "code_challenge_method": query.get("code_challenge_method"),
    }
    try:
        if options.follow_redirects:
            params: CallbackParams = await fetcher.follow_authorization(
                started.authorization_url,
                options.redirect_uri,
                profile=profile_of(server),
            )
            step.requests.append(
                Request(
                    "authorization",
                    "GET",
                    mask_url(started.authorization_url),
                    302,
                    "",
                )
            )
        elif options.authorizer is not None:
            params = await options.authorizer(
                started.authorization_url, options.redirect_uri
            )
        else:
            step.status = "skipped"
            step.summary = (
                "open the authorization URL in a browser, or probe again with "
                "--follow-redirects for an AS that approves at once"
            )
            steps.append(ProbeStep("token", "skipped", "no callback"))
            return False
    except TetherError as exc:
        _fail(step, exc)
        return False
    step.details["callback"] = mask_params(params)
    step.summary = "callback received" + (
        f" with error {params['error']}" if "error" in params else ""
    )

    step = ProbeStep("token")
    steps.append(step)
    try:
        info = await tether.complete(params, user=PROBE_USER)
    except TetherError as exc:
        step.requests = fetcher.take()
        _fail(step, exc)
        return False
    step.requests = fetcher.take()
    step.summary = "connected"
    step.details = {
        "scopes": list(info.scopes),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "refresh_token": "granted" if info.has_refresh_token else "none",
        "issuer": info.issuer,
    }
    return True


async def _tools(
    tether: Tether,
    fetcher: RecordingFetcher,
    options: ProbeOptions,
    report: ProbeReport,
    server: ServerRecord,
) -> None:
    """``tools/list`` and the optional call, re-authorizing within the retry budgets."""
    if not options.list_tools and options.call is None:
        return
    budgets = {"step_up": options.step_up_retries, "again": options.reauthorize_retries}
    while True:
        step = ProbeStep("tools")
        report.steps.append(step)
        try:
            await _list_and_call(tether, options, report, step, server)
            return
        except AuthorizationRequired as exc:
            # A 403 insufficient_scope (SCP-6), or a grant the server no longer takes,
            # e.g. its PRM now names another authorization server (SEP-2352): the hub
            # has rediscovered, and connecting again registers at the new issuer.
            failed = report.steps[-1]
            _fail(failed, exc)
            kind = "step_up" if isinstance(exc, StepUpRequired) else "again"
            if budgets[kind] <= 0:
                return
            budgets[kind] -= 1
            failed.status = "skipped"
            failed.exit_code = 0
            failed.summary = f"{exc.message}; re-authorizing"
            if not await _authorize(tether, fetcher, options, report, server):
                return
        except TetherError as exc:
            _fail(report.steps[-1], exc)
            return


async def _list_and_call(
    tether: Tether,
    options: ProbeOptions,
    report: ProbeReport,
    step: ProbeStep,
    server: ServerRecord,
) -> None:
    started = time.monotonic()
    test = await tether.test_connection(server.id)
    names = list(test.tool_names)
    step.summary = f"{test.tool_count} tool(s)"
    step.details = {
        "protocol_version": test.protocol_version,
        "server_info": dict(test.server_info),
        "capabilities": dict(test.capabilities),
        "tool_count": test.tool_count,
        "tool_names": names,
        "seconds": round(time.monotonic() - started, 3),
    }
    for name, arguments in await _planned_calls(tether, options, server, names):
        step = ProbeStep("call")
        report.steps.append(step)
        await _call(tether, step, server, name, arguments)


async def _planned_calls(
    tether: Tether, options: ProbeOptions, server: ServerRecord, names: list[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The tool calls the options ask for, in order (see :class:`ProbeOptions`)."""
    if options.call is not None:
        return [(options.call, options.call_args)]
    if options.tool_calls:
        return list(options.tool_calls)
    if options.call_all_listed:
        return [(name, {}) for name in names]
    if options.schema_echo is not None:
        echo, source = options.schema_echo
        tools = {t.get("name"): t for t in await tether.list_tools(server.id)}
        schema = tools.get(source, {}).get("inputSchema")
        if echo in tools and isinstance(schema, dict):
            return [(echo, {"schema": schema})]
    if options.call_if_listed in names:
        return [(options.call_if_listed, {})]
    return []


async def _call(
    tether: Tether,
    step: ProbeStep,
    server: ServerRecord,
    name: str,
    arguments: Mapping[str, Any],
) -> None:
    result = await tether.call_tool(server.id, name, dict(arguments), raise_errors=True)
    step.details = {
        "tool": name,
        "is_error": result.is_error,
        "text": result.text[:500],
    }
    if result.structured is not None:
        step.details["structured"] = result.structured
    if not result.is_error:
        step.summary = f"{name} succeeded"
        return
    step.status = "failed"
    step.exit_code = 1
    step.summary = f"{name} returned isError: true"
    step.error = {
        "code": result.error_code or "tool_error",
        "message": step.summary,
        "hint": "check the tool's arguments (--args)",
    }


async def _skills(
    tether: Tether, options: ProbeOptions, report: ProbeReport, server: ServerRecord
) -> None:
    """List the server's skills and, with ``load``, load each one (SEP-2640)."""
    step = ProbeStep("skills")
    report.steps.append(step)
    try:
        entries = await tether.list_skills(server.id)
    except TetherError as exc:
        _fail(step, exc)
        return
    step.summary = f"{len(entries)} skill(s)"
    step.details = {
        "skills": [
            {"name": e.name, "uri": e.uri, "files": len(e.files)} for e in entries
        ]
    }
    if options.skills != "load":
        return
    for entry in entries:
        step = ProbeStep("skill")
        report.steps.append(step)
        try:
            skill = await tether.read_skill(server.id, entry.name)
            for file in entry.supporting:
                await tether.read_skill_file(server.id, entry.name, file.uri)
        except TetherError as exc:
            _fail(step, exc)
            continue
        step.summary = f"{skill.name} loaded and verified"
        step.details = {"skill": skill.name, "files": len(entry.files)}


def check_options(options: ProbeOptions) -> None:
    """Reject contradictory options before any request.

    Raises:
        UsageError: e.g. a client secret without a client id.
    """
    if options.client_secret is not None and options.client_id is None:
        raise UsageError("a client secret needs --client-id")
    try:
        check_redirect_uri(options.redirect_uri)
    except ConfigurationError as exc:
        raise UsageError(f"--redirect-uri: {exc.message}", hint=exc.hint) from None
    if options.registration == "manual" and options.client_id is None:
        raise UsageError("manual registration needs --client-id")
