"""The probe's connect steps: discovery, registration, authorization, token.

They drive the public :class:`tether.Tether` API a configured server's connect uses
(:meth:`~tether.Tether.connect`, :meth:`~tether.Tether.complete`, the machine grants)
and report what the hub stored (:meth:`~tether.Tether.discovery`,
:meth:`~tether.Tether.registration`) with the requests each step made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tether import Tether, TetherError
from tether.probe.options import SERVER_NAME, ProbeOptions
from tether.probe.recorder import Recorder
from tether.probe.report import (
    ProbeReport,
    ProbeStep,
    Request,
    fail,
    mask_params,
    mask_url,
)

__all__ = ["PROBE_USER", "authorize", "machine"]

PROBE_USER = "probe"
"""The initiator of the probe's own connects (every start names one)."""


async def machine(
    tether: Tether,
    recorder: Recorder,
    options: ProbeOptions,
    report: ProbeReport,
    challenge: Any,
) -> bool:
    """Client credentials or enterprise-managed authorization: no browser step.

    Reported as ``discovery``, (``token_exchange`` at the IdP for ``enterprise``) and
    ``token``; the step that failed carries the error.
    """
    error: TetherError | None = None
    info = None
    options.note(f"discovery and the {options.grant} grant")
    try:
        if options.grant == "enterprise":
            info = await tether.connect_enterprise(
                SERVER_NAME, id_token=options.id_token, challenge=challenge
            )
        else:
            info = await tether.connect_machine(SERVER_NAME, challenge=challenge)
    except TetherError as exc:
        error = exc
    names = (
        "discovery",
        *(("token_exchange",) if options.grant == "enterprise" else ()),
        "token",
    )
    by_step = recorder.take_by_step("token", names)
    failed_at = (error.step or "token") if error is not None else None
    if failed_at not in by_step:
        failed_at = "token"
    for name in names:
        step = ProbeStep(name, requests=by_step[name])
        report.steps.append(step)
        if error is not None and failed_at == name:
            fail(step, error)
            return False
        if name == "discovery":
            record = await tether.discovery(SERVER_NAME)
            if record is not None:
                step.details = discovery_details(record, options)
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


async def _setup_steps(
    tether: Tether,
    options: ProbeOptions,
    report: ProbeReport,
    requests: dict[str, list[Request]],
    error: TetherError | None,
) -> bool:
    """Discovery and registration steps of the hub's connect start; False if one failed."""
    failed_at = error.step if error is not None else None
    step = ProbeStep("discovery", requests=requests["discovery"])
    report.steps.append(step)
    if failed_at == "discovery" and error is not None:
        fail(step, error)
        tried = error.details.get("tried")
        if tried:
            step.details["tried"] = tried
        return False
    record = await tether.discovery(SERVER_NAME)
    if record is None:  # the connect failed before discovery (e.g. blocked URL)
        if error is not None:
            fail(step, error)
        return False
    step.details = discovery_details(record, options)
    step.summary = f"authorization server {record.issuer}"
    step = ProbeStep("registration", requests=requests["registration"])
    report.steps.append(step)
    if failed_at == "registration" and error is not None:
        fail(step, error)
        return False
    registration = await tether.registration(SERVER_NAME)
    if registration is None:
        if error is not None:
            fail(step, error)
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


async def authorize(
    tether: Tether,
    recorder: Recorder,
    options: ProbeOptions,
    report: ProbeReport,
    *,
    challenge: Any = None,
    first: bool = False,
) -> bool:
    """Start, complete the user step, exchange the code (also used for step-up).

    ``Tether.connect`` does what a configured server's connect does: without a
    challenge it asks the server itself, then discovers and registers.
    """
    steps = report.steps
    error: TetherError | None = None
    options.note("discovery and registration" if first else "authorizing again")
    try:
        started = await tether.connect(
            SERVER_NAME, user=PROBE_USER, challenge=challenge
        )
    except TetherError as exc:
        error = exc
    requests = recorder.take_by_step("authorization", ("discovery", "registration"))
    if first and not await _setup_steps(tether, options, report, requests, error):
        return False
    step = ProbeStep("authorization", requests=requests.get("authorization", []))
    if not first:
        step.requests = [r for reqs in requests.values() for r in reqs]
    steps.append(step)
    if error is not None:
        fail(step, error)
        return False
    query = dict(parse_qsl(urlsplit(started.authorization_url).query))
    step.details = {
        "authorization_url": mask_url(started.authorization_url),
        "scope": query.get("scope"),
        "resource": query.get("resource"),
        "code_challenge_method": query.get("code_challenge_method"),
    }
    params: Mapping[str, str | Sequence[str]]
    if options.follow_redirects or options.authorizer is not None:
        options.note("the authorization")
    try:
        if options.follow_redirects:
            params = await tether.follow_authorization(
                SERVER_NAME, started.authorization_url
            )
            step.requests.append(
                Request(
                    "authorization",
                    "GET",
                    mask_url(started.authorization_url),
                    302,
                    "",
                    "AS",
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
        fail(step, exc)
        return False
    step.details["callback"] = mask_params(params)
    step.summary = "callback received" + (
        f" with error {params['error']}" if "error" in params else ""
    )

    step = ProbeStep("token")
    steps.append(step)
    options.note("the token")
    try:
        info = await tether.complete(params, user=PROBE_USER)
    except TetherError as exc:
        step.requests = recorder.take("token")
        fail(step, exc)
        return False
    step.requests = recorder.take("token")
    step.summary = "connected"
    step.details = {
        "scopes": list(info.scopes),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "refresh_token": "granted" if info.has_refresh_token else "none",
        "issuer": info.issuer,
    }
    return True


def discovery_details(record: Any, options: ProbeOptions) -> dict[str, Any]:
    """The discovery verdicts of a stored discovery (never a secret)."""
    meta: dict[str, Any] = dict(record.as_metadata)
    methods: list[str] = list(meta.get("code_challenge_methods_supported") or [])
    if "S256" in methods:
        pkce = "S256 advertised"
    elif options.allow_missing_pkce_metadata:
        pkce = "S256 not advertised; accepted because allow_missing_pkce_metadata is on"
    else:  # pragma: no cover - discovery refuses this before we get here
        pkce = "S256 not advertised"
    registration = []
    if meta.get("client_id_metadata_document_supported"):
        registration.append("client ID metadata document")
    if meta.get("registration_endpoint"):
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
        if meta.get("authorization_response_iss_parameter_supported")
        else "not advertised",
        "cimd_supported": bool(meta.get("client_id_metadata_document_supported")),
        "registration_endpoint": meta.get("registration_endpoint"),
        "registration_paths": registration or ["manual only"],
        "token_endpoint_auth_methods": list(
            meta.get("token_endpoint_auth_methods_supported") or []
        ),
    }
