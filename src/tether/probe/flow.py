"""``probe``: run the whole connect flow against one MCP server and explain it.

A headless diagnostic (issue #4). It opens a throw-away :class:`tether.Tether` on an
in-memory store and drives the same public API an application uses (ask the server,
connect, complete, test, call) step by step, recording for each step what happened,
every HTTP request it made (its party, method, URL, status; issue 9) and — on
failure — the Tether error's code, message and hint.
"""

from __future__ import annotations

from typing import Any

from tether import KeyRing, MCPProtocolError, Tether, TetherError, accept_defaults
from tether.probe.calls import skills, tools
from tether.probe.connect import authorize, machine
from tether.probe.options import SERVER_NAME, ProbeOptions, server_spec
from tether.probe.recorder import Recorder
from tether.probe.report import ProbeReport, ProbeStep, fail

__all__ = ["probe"]

_HTML = ("text/html", "application/xhtml+xml")


async def probe(options: ProbeOptions) -> ProbeReport:
    """Run the connect flow against ``options.url`` and report every step.

    Never raises a :class:`~tether.errors.TetherError`: failures end the probe with a
    failed step carrying the error's code, message and hint.
    """
    report = ProbeReport(url=options.url)
    recorder = Recorder()
    try:  # the installation's network settings; the server's own are merged per request
        tether = await Tether.open(
            database_url="memory://",
            key_ring=KeyRing.generate(),
            redirect_uri=options.redirect_uri,
            client_metadata_url=options.client_metadata_url,
            client_name=options.client_name,
            allow_networks=options.installation_allow_networks,
            ca_bundle=options.installation_ca_bundle,
            elicitation=accept_defaults if options.elicitation == "defaults" else None,
            on_request=recorder,
        )
    except TetherError as exc:
        step = ProbeStep("setup")
        fail(step, exc)
        report.steps.append(step)
        return report
    try:
        await _run(tether, recorder, options, report)
    finally:
        await tether.aclose()
        report.closing = recorder.take("close")
    return report


async def _run(
    tether: Tether, recorder: Recorder, options: ProbeOptions, report: ProbeReport
) -> None:
    steps = report.steps
    spec = server_spec(options)
    setup = ProbeStep("configuration")
    try:  # registered without OAuth first: the challenge decides whether it needs it
        await tether.servers.create(
            {**spec, "auth_mode": "none", "oauth": {}}, actor="probe"
        )
    except TetherError as exc:
        steps.append(setup)
        fail(setup, exc)
        return

    # 1. challenge: does the server ask for authorization, and how?
    answer = await _challenge(tether, recorder, options, report)
    if answer is None:
        return
    challenge, needs_auth = answer

    if needs_auth:
        # 2. the server's OAuth settings (same validation as `tether servers set`)
        try:
            oauth = dict(spec["oauth"])
            if options.client_secret is not None:
                cred = await tether.credentials.create(
                    "probe-client-secret", options.client_secret, actor="probe"
                )
                oauth["client_secret_credential_id"] = cred.id
            await _machine_credentials(tether, options, oauth)
            await tether.servers.update(
                SERVER_NAME, {"auth_mode": "oauth", "oauth": oauth}, actor="probe"
            )
        except TetherError as exc:
            steps.append(setup)
            fail(setup, exc)
            return
        if options.grant != "authorization_code":
            if not await machine(tether, recorder, options, report, challenge):
                return
        elif not await authorize(
            tether, recorder, options, report, challenge=challenge, first=True
        ):
            return
    else:
        for name in ("discovery", "registration", "authorization", "token"):
            steps.append(
                ProbeStep(name, "skipped", "the server did not ask for authorization")
            )
    await tools(tether, recorder, options, report)
    if options.skills != "off" and report.failed_step is None:
        await skills(tether, recorder, options, report)


async def _challenge(
    tether: Tether, recorder: Recorder, options: ProbeOptions, report: ProbeReport
) -> tuple[Any, bool] | None:
    """Ask the server without a token: ``(its Bearer challenge or None, needs auth)``.

    ``None`` when that step failed.
    """
    step = ProbeStep("challenge")
    report.steps.append(step)
    options.note("asking the server without a token")
    try:
        answer = await tether.challenge(
            SERVER_NAME, protocol_version=options.protocol_version
        )
    except TetherError as exc:
        step.requests = recorder.take("challenge")
        fail(step, exc)
        return None
    step.requests = recorder.take("challenge")
    challenge = answer.challenge
    media = answer.content_type.split(";")[0].strip().lower()
    if answer.needs_auth:
        step.summary = f"HTTP {answer.status}: the server wants a token"
        step.details = {
            "status": answer.status,
            "bearer_challenge": challenge is not None,
            "resource_metadata": challenge.resource_metadata if challenge else None,
            "scope": list(challenge.scope) if challenge else [],
        }
        return challenge, True
    step.details = {"status": answer.status, "content_type": answer.content_type}
    if media in _HTML:
        # a web page (a login page, a landing page) is not an MCP endpoint (issue 10)
        fail(
            step,
            MCPProtocolError(
                f"not an MCP endpoint: {options.url} answered HTTP {answer.status} "
                f"with a web page ({media}), not JSON-RPC",
                step="challenge",
                hint="use the server's MCP endpoint URL (from its documentation; "
                "often ending in /mcp), not the address of its web site",
            ),
        )
        return None
    step.summary = (
        f"HTTP {answer.status} without authorization: no OAuth needed"
        if answer.status < 400
        else f"HTTP {answer.status}: not an authorization challenge"
    )
    return challenge, False


async def _machine_credentials(
    tether: Tether, options: ProbeOptions, oauth: dict[str, object]
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
