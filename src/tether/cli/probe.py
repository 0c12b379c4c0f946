"""``tether probe URL``: the headless connect diagnostic (issue #4).

Turns command-line options (and, with ``--conformance``, the MCP conformance suite's
environment variables) into :class:`~tether.hub.probe.ProbeOptions`, runs
:func:`tether.hub.probe.probe` and prints the report. Only this shell reads the
environment; the hub never does. The installation's network settings
(``TETHER_ALLOW_NETWORKS``, ``TETHER_CA_BUNDLE``) apply to the probe exactly as to every
other command; ``--allow-network`` and ``--ca-bundle`` are the probed server's own.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import typer

from tether.cli.args import param_pairs
from tether.cli.callback import wait_for_callback
from tether.config import Settings
from tether.errors import UsageError, exit_code
from tether.hub.probe import ProbeOptions, ProbeReport, check_options
from tether.hub.probe import probe as run_probe

__all__ = ["conformance_options", "probe", "render_report"]

#: The client ID metadata document URL the conformance suite expects (auth/basic-cimd).
CONFORMANCE_CIMD_URL = "https://conformance-test.local/client-metadata.json"
LOOPBACK = ("127.0.0.0/8", "::1/128", "localhost")

#: Tool calls the conformance scenarios check (conformance/SCENARIOS.md §5).
CONFORMANCE_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "tools_call": ("add_numbers", {"a": 2, "b": 3}),
    "elicitation-sep1034-client-defaults": ("test_client_elicitation_defaults", {}),
    "sse-retry": ("test_reconnection", {}),
}
#: Otherwise call this tool when the server lists it (auth scenarios, step-up).
CONFORMANCE_DEFAULT_TOOL = "test-tool"
#: Scenarios that check what the client calls of what it listed: call every tool the
#: hub keeps (http-invalid-tool-headers: tools with invalid x-mcp-header annotations
#: must be left out; the others check headers and requestState on each call).
CONFORMANCE_CALL_ALL_LISTED = frozenset(
    {
        "http-standard-headers",
        "http-invalid-tool-headers",
        "sep-2322-client-request-state",
    }
)
#: Scenarios that read back a listed schema: ``(echo tool, tool whose inputSchema)``.
CONFORMANCE_SCHEMA_ECHO: dict[str, tuple[str, str]] = {
    "json-schema-2020-12-preservation": (
        "json_schema_echo",
        "json_schema_2020_12_tool",
    ),
}

#: Skills scenarios (SEP-2640): list only (a host reads no file before a skill is
#: loaded), or load every skill, which must stop at a file that fails verification.
CONFORMANCE_SKILLS: dict[str, Literal["list", "load"]] = {
    "sep-2640-client-no-prefetch": "list",
    "sep-2640-client-verify-digest": "load",
    "sep-2640-client-verify-size": "load",
    "sep-2640-client-verify-frontmatter": "load",
}

_MARK = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}


def conformance_options(
    url: str, env: Mapping[str, str], base: ProbeOptions
) -> ProbeOptions:
    """Options for one conformance scenario from the suite's environment variables."""
    scenario = env.get("MCP_CONFORMANCE_SCENARIO", "")
    context: dict[str, Any] = {}
    raw = env.get("MCP_CONFORMANCE_CONTEXT")
    if raw:
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UsageError(f"MCP_CONFORMANCE_CONTEXT is not JSON: {exc}") from None
        if isinstance(loaded, dict):
            context = loaded
    changes: dict[str, Any] = {
        "url": url,
        "allow_networks": tuple(dict.fromkeys([*base.allow_networks, *LOOPBACK])),
        "follow_redirects": True,
        "list_tools": True,
        "client_metadata_url": base.client_metadata_url or CONFORMANCE_CIMD_URL,
        "step_up_retries": max(base.step_up_retries, 1),
        "reauthorize_retries": max(base.reauthorize_retries, 1),
        "call_if_listed": CONFORMANCE_DEFAULT_TOOL,
        # auth/2025-03-26-oauth-endpoint-fallback: the same opt-in an admin would set
        # for a server without metadata (ASM-9, Known disagreements #15).
        "legacy_endpoints": True,
        # elicitation-sep1034-client-defaults: nobody answers, so accept the defaults.
        "elicitation": "defaults",
        # auth/dpop, auth/dpop-nonce: DPoP when the AS advertises it (RFC 9449)
        "dpop": "auto",
    }
    if context.get("client_id") and context.get("client_secret"):
        changes.update(
            registration="manual",
            client_id=str(context["client_id"]),
            client_secret=str(context["client_secret"]),
        )
    changes.update(_grant_options(scenario, context))
    # 0.2.0: the revision the scenario speaks; 2026-07-28 is stateless from the first
    # request on (an admin can set the same preference for a server).
    if env.get("MCP_CONFORMANCE_PROTOCOL_VERSION"):
        changes["protocol_version"] = env["MCP_CONFORMANCE_PROTOCOL_VERSION"]
    if base.call is None:
        call = CONFORMANCE_CALLS.get(scenario)
        if call is not None:
            changes.update(call=call[0], call_args=call[1])
        changes["tool_calls"] = _context_calls(context)
        changes["call_all_listed"] = scenario in CONFORMANCE_CALL_ALL_LISTED
        changes["schema_echo"] = CONFORMANCE_SCHEMA_ECHO.get(scenario)
    if base.skills == "off":
        changes["skills"] = CONFORMANCE_SKILLS.get(scenario, "off")
    options = ProbeOptions(**{**_fields(base), **changes})
    return options


def _context_calls(context: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The context's ``toolCalls`` (http-custom-headers): the calls the client must make."""
    calls = context.get("toolCalls")
    if not isinstance(calls, list):
        return ()
    return tuple(
        (str(call["name"]), dict(call.get("arguments") or {}))
        for call in calls
        if isinstance(call, dict) and call.get("name")
    )


def _grant_options(scenario: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The non-browser grants of the extension scenarios (conformance/SCENARIOS.md).

    ``auth/client-credentials-*``: the client_credentials grant, with the context's
    secret (basic) or EC private key (private_key_jwt). ``auth/cross-app-access-*`` /
    ``auth/enterprise-managed-authorization``: the IdP endpoint, client id and the
    user's ID token come from the context (the suite's IdP needs no client secret).
    """
    out: dict[str, Any] = {}
    if context.get("valid_jwt"):
        # auth/wif-jwt-bearer (SEP-1933): the workload's JWT, straight to the AS;
        # wrong_audience_jwt / expired_jwt are only for negative runs.
        out.update(
            grant="jwt_bearer",
            registration="manual",
            client_id=str(context.get("client_id") or "") or None,
            assertion=str(context["valid_jwt"]),
        )
    elif context.get("idp_token_endpoint") and context.get("idp_id_token"):
        out.update(
            grant="enterprise",
            registration="manual",
            idp_token_endpoint=str(context["idp_token_endpoint"]),
            idp_client_id=str(context.get("idp_client_id") or "") or None,
            id_token=str(context["idp_id_token"]),
        )
        if context.get("idp_client_secret"):
            out["idp_client_secret"] = str(context["idp_client_secret"])
    elif scenario.startswith("auth/client-credentials") or context.get(
        "private_key_pem"
    ):
        out.update(grant="client_credentials", registration="manual")
    if context.get("private_key_pem") and context.get("client_id"):
        out.update(
            client_id=str(context["client_id"]),
            private_key_pem=str(context["private_key_pem"]),
            signing_algorithm=context.get("signing_algorithm") or None,
        )
    return out


def _resource_match(value: str) -> Literal["exact", "prefix"]:
    if value == "exact":
        return "exact"
    if value == "prefix":
        return "prefix"
    raise UsageError(f"--resource-match must be exact or prefix, not {value!r}")


def _skills_mode(value: str) -> Literal["off", "list", "load"]:
    modes: dict[str, Literal["off", "list", "load"]] = {
        "off": "off",
        "list": "list",
        "load": "load",
    }
    if value in modes:
        return modes[value]
    raise UsageError(f"--skills must be off, list or load, not {value!r}")


def _fields(options: ProbeOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def render_report(report: ProbeReport, *, as_json: bool) -> str:
    """The report as text (default) or JSON."""
    if as_json:
        return json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str)
    lines = [f"tether probe {report.url}"]
    for step in report.steps:
        lines.append(f"[{_MARK[step.status]}] {step.name}: {step.summary}".rstrip())
        for req in step.requests:
            status = req.status if req.status is not None else (req.error or "error")
            ctype = f" {req.content_type}" if req.content_type else ""
            lines.append(f"    {req.method} {req.url} -> {status}{ctype}")
        for key, value in step.details.items():
            if key == "fix" or value in (None, [], {}, ""):
                continue
            if isinstance(value, list | dict):
                value = json.dumps(value, default=str)
            lines.append(f"    {key}: {value}")
        if step.error is not None:
            lines.append(
                f"    error: {step.error.get('code')}: {step.error.get('message')}"
            )
            if step.error.get("hint"):
                lines.append(f"    fix: {step.error['hint']}")
            tried = step.error.get("details", {}).get("tried")
            if tried:
                lines.append(f"    tried: {', '.join(map(str, tried))}")
    failed = report.failed_step
    if failed is None:
        lines.append("result: ok")
    else:
        lines.append(f"result: failed at {failed.name} (exit {report.exit_code})")
    return "\n".join(lines)


def probe(
    url: Annotated[str, typer.Argument(help="The MCP server URL (last argument).")],
    scopes: Annotated[str | None, typer.Option(help="Scopes to request.")] = None,
    auth_param: Annotated[
        list[str], typer.Option(help="Authorization parameter NAME=VALUE.")
    ] = [],  # noqa: B006
    remove_auth_param: Annotated[
        list[str], typer.Option(help="Drop a default authorization parameter.")
    ] = [],  # noqa: B006
    token_param: Annotated[
        list[str], typer.Option(help="Token parameter NAME=VALUE.")
    ] = [],  # noqa: B006
    remove_token_param: Annotated[
        list[str], typer.Option(help="Drop a default token parameter.")
    ] = [],  # noqa: B006
    registration: Annotated[
        str, typer.Option(help="auto, metadata_document, dynamic or manual.")
    ] = "auto",
    client_id: Annotated[str | None, typer.Option(help="Pre-registered id.")] = None,
    client_secret: Annotated[
        str | None, typer.Option(help="Its secret (never printed).")
    ] = None,
    token_auth_method: Annotated[str | None, typer.Option()] = None,
    allow_missing_pkce_metadata: bool = False,
    require_refresh_token: bool = False,
    allow_network: Annotated[
        list[str], typer.Option(help="Host or CIDR allowed though not public.")
    ] = [],  # noqa: B006
    ca_bundle: Annotated[str | None, typer.Option(help="PEM CA file.")] = None,
    timeout: Annotated[int, typer.Option(help="Seconds per step, 1-300.")] = 30,
    authorization_server: Annotated[
        str | None, typer.Option(help="Issuer to use instead of the PRM's.")
    ] = None,
    resource_match: Annotated[
        str, typer.Option(help="PRM resource check: exact, or prefix (same origin).")
    ] = "exact",
    resource_expected: Annotated[
        str | None, typer.Option(help="The exact PRM resource to accept.")
    ] = None,
    legacy_endpoints: Annotated[
        bool, typer.Option(help="Without PRM, use the 2025-03-26 fallback endpoints.")
    ] = False,
    follow_redirects: Annotated[
        bool, typer.Option(help="Complete the authorization headlessly.")
    ] = False,
    redirect_uri: Annotated[
        str, typer.Option(help="Callback URL (loopback: the probe listens on it).")
    ] = "http://127.0.0.1:8470/oauth/callback",
    client_metadata_url: Annotated[
        str | None, typer.Option(help="Client ID metadata document URL (CIMD).")
    ] = None,
    wait: Annotated[int, typer.Option(help="Seconds to wait for the callback.")] = 300,
    call: Annotated[str | None, typer.Option(help="Tool to call.")] = None,
    args: Annotated[str, typer.Option(help="Tool arguments as JSON.")] = "{}",
    skills: Annotated[
        str, typer.Option(help="off, list (skills/list), or load (read and verify).")
    ] = "off",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    conformance: Annotated[
        bool,
        typer.Option(
            help="MCP conformance suite client: read MCP_CONFORMANCE_SCENARIO and "
            "MCP_CONFORMANCE_CONTEXT, allow loopback, follow redirects, call the "
            "scenario's tool."
        ),
    ] = False,
) -> None:
    """Run the whole connect flow against an MCP server and explain each step."""
    try:  # the installation's network settings apply as to every command
        settings = Settings()
    except ValueError as exc:
        typer.echo(f"error: invalid TETHER_* settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        call_args = json.loads(args)
        if not isinstance(call_args, dict):
            raise ValueError("not an object")
        options = ProbeOptions(
            url=url,
            scopes=scopes,
            authorization_params=param_pairs(auth_param, remove_auth_param),
            token_params=param_pairs(token_param, remove_token_param),
            registration=registration,
            client_id=client_id,
            client_secret=client_secret,
            token_auth_method=token_auth_method,
            allow_missing_pkce_metadata=allow_missing_pkce_metadata,
            require_refresh_token=require_refresh_token,
            allow_networks=tuple(allow_network),
            installation_allow_networks=tuple(settings.allow_networks),
            installation_ca_bundle=settings.ca_bundle,
            ca_bundle=ca_bundle,
            timeout=timeout,
            authorization_server=authorization_server,
            resource_match=_resource_match(resource_match),
            resource_expected=resource_expected,
            legacy_endpoints=legacy_endpoints,
            follow_redirects=follow_redirects,
            redirect_uri=redirect_uri,
            client_metadata_url=client_metadata_url,
            call=call,
            call_args=call_args,
            skills=_skills_mode(skills),
        )
        if conformance:
            options = conformance_options(url, os.environ, options)
        check_options(options)
    except ValueError as exc:
        typer.echo(f"error: --args must be a JSON object ({exc})", err=True)
        raise typer.Exit(2) from None
    except UsageError as exc:
        typer.echo(f"error: {exc} [{exc.code}]", err=True)
        raise typer.Exit(exit_code(exc)) from None

    if not options.follow_redirects:

        async def authorizer(
            auth_url: str, callback: str
        ) -> dict[str, str | list[str]]:
            typer.echo(f"Open this URL to authorize:\n\n  {auth_url}\n", err=True)
            return await wait_for_callback(callback, seconds=wait)

        options = ProbeOptions(**{**_fields(options), "authorizer": authorizer})

    report = asyncio.run(run_probe(options))
    typer.echo(render_report(report, as_json=as_json))
    raise typer.Exit(report.exit_code)
