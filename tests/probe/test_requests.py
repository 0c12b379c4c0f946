"""The request list of every probe (issue 9): each request's party, method, URL, status.

Asserted exactly against the real peers: which requests a cold connect makes is a
behaviour of the protocol, not a timing. The MCP session's requests after the connect
(``tools/list``, ``tools/call``) are asserted by their JSON-RPC methods.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from peers.fixture import AuthServer, MCPServer
from tether import RequestRecord
from tether.cli.main import app
from tether.probe import ProbeOptions, probe
from tether.probe.recorder import Recorder, party_of

LOOPBACK = ["--allow-network", "127.0.0.0/8"]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.mark.realservers
def test_probe_json_lists_every_request_of_a_cold_connect(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "probe",
            mcp_server.url,
            *LOOPBACK,
            "--follow-redirects",
            "--call",
            "echo",
            "--args",
            '{"text": "hi"}',
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    mcp, issuer = _origin(mcp_server.url), auth_server.issuer.rstrip("/")
    connect = [
        (r["step"], r["party"], r["method"], r["url"].split("?")[0], r["status"])
        for r in report["requests"]
        if r["step"] not in ("tools", "call", "close")
    ]
    assert connect == [
        ("challenge", "MCP", "POST", mcp_server.url, 401),
        (
            "discovery",
            "MCP",
            "GET",
            f"{mcp}/.well-known/oauth-protected-resource{urlsplit(mcp_server.url).path}",
            200,
        ),
        (
            "discovery",
            "AS",
            "GET",
            f"{issuer}/.well-known/oauth-authorization-server",
            200,
        ),
        ("registration", "AS", "POST", f"{issuer}/reg", 201),
        ("authorization", "AS", "GET", f"{issuer}/auth", 302),
        ("token", "AS", "POST", f"{issuer}/token", 200),
    ]
    assert report["requests"][0]["rpc"] == "initialize"
    # the authorization request's URL is listed with its state masked
    authorization = next(r for r in report["requests"] if r["step"] == "authorization")
    assert (
        "state=%2A%2A%2A" in authorization["url"] or "state=***" in authorization["url"]
    )
    # after the connect: MCP requests with the token, ending in the asked-for call
    after = [r for r in report["requests"] if r["step"] in ("tools", "call")]
    assert {r["party"] for r in after} == {"MCP"}
    assert all(r["url"] == mcp_server.url and r["status"] == 200 for r in after)
    # (the session's subscriptions/listen stream opens in the background: its
    # place among them is a timing, so it is left out here)
    calls = [
        (r["step"], r.get("rpc"))
        for r in after
        if r.get("rpc") != "subscriptions/listen"
    ]
    assert calls[-1] == ("call", "tools/call")
    assert ("tools", "tools/list") in calls
    # each step's own list is the same requests
    per_step = [
        {**req, "step": step["name"]}
        for step in report["steps"]
        for req in step["requests"]
    ]
    assert per_step == [r for r in report["requests"] if r["step"] != "close"]


@pytest.mark.realservers
def test_probe_human_output_counts_requests_by_party(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    result = CliRunner().invoke(
        app, ["probe", mcp_server.url, *LOOPBACK, "--follow-redirects"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"    MCP POST {mcp_server.url} (initialize) -> 401" in [
        line.split(" text/")[0].split(" application/")[0] for line in lines
    ]
    assert f"    AS POST {auth_server.issuer.rstrip('/')}/reg -> 201" in [
        line.split(" application/")[0] for line in lines
    ]
    counted = next(line for line in lines if line.startswith("requests: "))
    assert "4 AS" in counted  # metadata, registration, authorization, token
    assert "MCP" in counted


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_request_without_an_answer_is_listed_with_its_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/mcp"
    report = await probe(ProbeOptions(url=url, allow_networks=("127.0.0.0/8",)))
    assert report.failed_step is not None
    assert report.failed_step.name == "challenge"
    (request,) = report.requests
    assert (request.party, request.method, request.url) == ("MCP", "POST", url)
    assert request.status is None
    assert request.error is not None
    assert request.error.startswith("network")
    assert request.to_dict()["error"] == request.error
    assert request.line().endswith(f"-> {request.error}")


@pytest.mark.parametrize(
    ("step", "url", "party"),
    [
        (None, "https://mcp.example/mcp", "MCP"),
        ("challenge", "https://mcp.example/mcp", "MCP"),
        (
            "discovery",
            "https://mcp.example/.well-known/oauth-protected-resource/mcp",
            "MCP",
        ),
        (
            "discovery",
            "https://as.example/.well-known/oauth-authorization-server",
            "AS",
        ),
        ("registration", "https://as.example/reg", "AS"),
        ("token", "https://as.example/token", "AS"),
        ("revocation", "https://as.example/revoke", "AS"),
        ("token_exchange", "https://idp.example/token", "IdP"),
    ],
)
def test_party_of(step: str | None, url: str, party: str) -> None:
    assert party_of(RequestRecord("GET", url, 200, step=step)) == party


def test_the_recorder_masks_secret_query_parameters() -> None:
    recorder = Recorder()
    recorder(RequestRecord("GET", "https://as.example/cb?code=abc&state=xyz&a=1", 200))
    (request,) = recorder.take("authorization")
    assert "abc" not in request.url
    assert "xyz" not in request.url
    assert "a=1" in request.url
    assert recorder.take("next") == []
