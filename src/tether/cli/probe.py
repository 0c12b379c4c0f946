"""``tether probe URL``: the headless connect diagnostic (issue #4).

Turns command-line options (and, with ``--conformance``, the MCP conformance suite's
environment variables) into :class:`~tether.probe.ProbeOptions`, runs
:func:`tether.probe.probe` and prints the report. Only this shell reads the
environment; the hub never does. The installation's network settings
(``TETHER_ALLOW_NETWORKS``, ``TETHER_CA_BUNDLE``) apply to the probe exactly as to every
other command; ``--allow-network`` and ``--ca-bundle`` are the probed server's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Annotated, Any, Literal

import typer

from tether.cli.args import param_pairs
from tether.cli.callback import await_callback
from tether.config import Settings
from tether.errors import ConfigurationError, UsageError, exit_code
from tether.oauth.redirect_uri import check_redirect_uri
from tether.probe import (
    ProbeOptions,
    check_options,
    conformance_options,
    render_report,
)
from tether.probe import probe as run_probe

__all__ = ["probe"]


def stderr_is_terminal() -> bool:
    """True when a person watches standard error (progress lines go there)."""
    return sys.stderr.isatty()


def _show_progress(what: str) -> None:
    typer.echo(f"… {what}", err=True)


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
        try:
            check_redirect_uri(options.redirect_uri)
        except ConfigurationError as exc:
            raise UsageError(f"--redirect-uri: {exc.message}", hint=exc.hint) from None
    except ValueError as exc:
        typer.echo(f"error: --args must be a JSON object ({exc})", err=True)
        raise typer.Exit(2) from None
    except UsageError as exc:
        typer.echo(f"error: {exc} [{exc.code}]", err=True)
        raise typer.Exit(exit_code(exc)) from None

    changes: dict[str, Any] = {}
    if not options.follow_redirects:

        async def authorizer(
            auth_url: str, callback: str
        ) -> dict[str, str | list[str]]:
            typer.echo(f"Open this URL to authorize:\n\n  {auth_url}\n", err=True)
            typer.echo(
                f"Waiting up to {wait} s for the browser to come back "
                "(Ctrl-C to stop)…",
                err=True,
            )
            return await await_callback(
                callback, wait, server=url, again="tether probe"
            )

        changes["authorizer"] = authorizer
    if stderr_is_terminal():  # a person watching: say what the probe waits for
        changes["progress"] = _show_progress
    options = ProbeOptions(**{**options.fields(), **changes})

    report = asyncio.run(run_probe(options))
    typer.echo(render_report(report, as_json=as_json))
    raise typer.Exit(report.exit_code)
