"""The MCP conformance suite's client: scenario options from its environment (§5).

``tether probe --conformance`` reads ``MCP_CONFORMANCE_SCENARIO`` and
``MCP_CONFORMANCE_CONTEXT`` (the CLI passes the environment in; this module reads
none) and turns them into :class:`~tether.probe.options.ProbeOptions`
(conformance/SCENARIOS.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from tether.errors import UsageError
from tether.probe.options import ProbeOptions

__all__ = ["conformance_options"]

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
    options = ProbeOptions(**{**base.fields(), **changes})
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
