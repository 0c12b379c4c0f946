"""``tether probe`` against the real loopback peers and deliberately broken servers.

Each test runs the CLI command (typer's CliRunner) or the hub function and checks that
the report names what happened, the failing step and the fix — and never a secret.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.cli import probe as cli_probe
from tether.cli.main import app
from tether.probe import ProbeOptions, conformance_options, mask_url

pytestmark = pytest.mark.realservers

LOOPBACK = ["--allow-network", "127.0.0.0/8", "--allow-network", "::1/128"]
SECRET = "probe-secret-value"


def run_probe(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["probe", *args])
    return result.exit_code, result.output


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, output = run_probe(*args, "--json")
    return code, json.loads(output)


def steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["steps"]}


def test_full_flow_human_and_json(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    code, text = run_probe(mcp_server.url, *LOOPBACK, "--follow-redirects")
    assert code == 0, text
    for line in (
        "[ok] challenge",
        "[ok] discovery",
        "[ok] registration",
        "[ok] authorization",
        "[ok] token",
        "[ok] tools",
        "result: ok",
    ):
        assert line in text
    assert "/.well-known/oauth-protected-resource" in text
    assert "state=%2A%2A%2A" in text or "state=***" in text

    code, report = run_json(
        mcp_server.url,
        *LOOPBACK,
        "--follow-redirects",
        "--call",
        "echo",
        "--args",
        '{"text": "hi"}',
    )
    by_name = steps(report)
    assert report["ok"] is True, report
    assert code == 0
    discovery = by_name["discovery"]["details"]
    assert discovery["issuer"] == auth_server.issuer
    assert discovery["pkce"] == "S256 advertised"
    assert discovery["resource"] == mcp_server.url
    assert by_name["registration"]["details"]["source"] == "dynamic"
    assert by_name["tools"]["details"]["tool_count"] >= 1
    urls = [r["url"] for r in by_name["discovery"]["requests"]]
    assert any(
        ".well-known/oauth-authorization-server" in u or "openid-configuration" in u
        for u in urls
    )
    dump = json.dumps(report)
    assert "access_token" not in dump.replace('"access_token"', "")
    callback = by_name["authorization"]["details"]["callback"]
    assert callback["code"] == "***"
    assert callback["state"] == "***"


def test_prm_probed_without_challenge_hint(
    auth_server: AuthServer, tmp_peers: PeerFactory
) -> None:
    mcp = tmp_peers.mcp_server(
        auth_server, MCP_PRM_ROOT=0, MCP_WWW_AUTH_RESOURCE_METADATA=0
    )
    code, report = run_json(mcp.url, *LOOPBACK, "--follow-redirects")
    assert code == 0, report
    by_name = steps(report)
    assert by_name["challenge"]["details"]["resource_metadata"] is None
    first = by_name["discovery"]["requests"][0]
    assert first["url"] == mcp.prm_url
    assert first["status"] == 200


def test_no_metadata_names_discovery(
    auth_server: AuthServer, tmp_peers: PeerFactory
) -> None:
    mcp = tmp_peers.mcp_server(auth_server, MCP_PRM=0)
    code, text = run_probe(mcp.url, *LOOPBACK, "--follow-redirects")
    assert code != 0
    assert "[FAILED] discovery" in text
    assert "fix:" in text
    assert "404" in text


def test_wrong_issuer(tmp_peers: PeerFactory) -> None:
    auth = tmp_peers.auth_server(AS_WRONG_ISSUER=1)
    mcp = tmp_peers.mcp_server(auth)
    code, report = run_json(mcp.url, *LOOPBACK, "--follow-redirects")
    assert code != 0
    assert report["failed_step"] == "discovery"
    error = steps(report)["discovery"]["error"]
    assert "issuer" in error["message"]
    assert error["code"]


def test_no_s256_and_the_override(tmp_peers: PeerFactory) -> None:
    auth = tmp_peers.auth_server(AS_NO_PKCE_METADATA=1)
    mcp = tmp_peers.mcp_server(auth)
    code, report = run_json(mcp.url, *LOOPBACK, "--follow-redirects")
    assert code != 0
    assert report["failed_step"] == "discovery"
    error = steps(report)["discovery"]["error"]
    assert "S256" in error["message"] or "PKCE" in error["message"]
    assert "allow missing PKCE metadata" in (error.get("hint") or "")

    code, report = run_json(
        mcp.url, *LOOPBACK, "--follow-redirects", "--allow-missing-pkce-metadata"
    )
    assert code == 0, report
    assert "accepted" in steps(report)["discovery"]["details"]["pkce"]


def test_registration_refused_without_manual_client(tmp_peers: PeerFactory) -> None:
    auth = tmp_peers.auth_server(AS_DCR=0)
    mcp = tmp_peers.mcp_server(auth)
    code, text = run_probe(mcp.url, *LOOPBACK, "--follow-redirects")
    assert code != 0
    assert "[FAILED] registration" in text
    assert "redirect" in text.lower()  # the hint names the redirect URI to register


def test_client_secret_never_printed(tmp_peers: PeerFactory) -> None:
    auth = tmp_peers.auth_server(AS_DCR=0)
    mcp = tmp_peers.mcp_server(auth)
    code, text = run_probe(
        mcp.url,
        *LOOPBACK,
        "--follow-redirects",
        "--client-id",
        "nobody",
        "--client-secret",
        SECRET,
        "--json",
    )
    assert SECRET not in text
    report = json.loads(text)
    assert report["ok"] is False  # unknown client at the AS
    assert report["exit_code"] == code


class _Html(BaseHTTPRequestHandler):
    def _send(
        self, status: int, ctype: str, body: bytes, extra: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/":  # a web site's home page answers anything with HTML
            self._send(200, "text/html; charset=utf-8", b"<html>home</html>", {})
            return
        self._send(401, "text/plain", b"no", {"WWW-Authenticate": "Bearer"})

    def do_GET(self) -> None:
        self._send(200, "text/html", b"<!doctype html><html>login</html>", {})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_html_instead_of_json(html_server: str) -> None:
    code, report = run_json(html_server, *LOOPBACK, "--follow-redirects")
    assert code != 0
    assert report["failed_step"] == "discovery"
    requests = steps(report)["discovery"]["requests"]
    assert requests
    assert all(r["content_type"].startswith("text/html") for r in requests)
    code, text = run_probe(html_server, *LOOPBACK, "--follow-redirects")
    assert "[FAILED] discovery" in text
    assert "text/html" in text
    assert "fix:" in text


def test_a_web_page_is_not_an_mcp_endpoint(html_server: str) -> None:
    home = html_server.removesuffix("mcp")
    code, text = run_probe(home, *LOOPBACK)
    assert code != 0
    assert "no OAuth needed" not in text
    assert f"[FAILED] challenge: not an MCP endpoint: {home} answered HTTP 200" in text
    assert "fix: use the server's MCP endpoint URL" in text
    code, report = run_json(home, *LOOPBACK)
    assert report["failed_step"] == "challenge"
    assert report["steps"][-1]["error"]["code"] == "mcp.protocol"
    assert report["requests"][0]["content_type"].startswith("text/html")


def test_conformance_options_read_the_context() -> None:
    env = {
        "MCP_CONFORMANCE_SCENARIO": "auth/pre-registration",
        "MCP_CONFORMANCE_CONTEXT": json.dumps(
            {"name": "auth/pre-registration", "client_id": "c", "client_secret": "s"}
        ),
    }
    options = conformance_options("http://localhost:1/mcp", env, ProbeOptions(url="x"))
    assert options.registration == "manual"
    assert options.client_id == "c"
    assert options.follow_redirects
    assert "127.0.0.0/8" in options.allow_networks
    tools = conformance_options(
        "http://localhost:1/mcp",
        {"MCP_CONFORMANCE_SCENARIO": "tools_call"},
        ProbeOptions(url="x"),
    )
    assert tools.call == "add_numbers"


def test_mask_url() -> None:
    masked = mask_url("https://as/authorize?client_id=a&state=s3cret&code=c0de")
    assert "s3cret" not in masked
    assert "c0de" not in masked
    assert "client_id=a" in masked


def test_conformance_options_for_the_2026_scenarios() -> None:
    """The protocol preference, the context's toolCalls and the per-scenario calls."""
    calls = [{"name": "t", "arguments": {"region": "eu", "verbose": None}}]
    custom = conformance_options(
        "http://localhost:1/mcp",
        {
            "MCP_CONFORMANCE_SCENARIO": "http-custom-headers",
            "MCP_CONFORMANCE_PROTOCOL_VERSION": "2026-07-28",
            "MCP_CONFORMANCE_CONTEXT": json.dumps({"name": "x", "toolCalls": calls}),
        },
        ProbeOptions(url="x"),
    )
    assert custom.protocol_version == "2026-07-28"
    assert custom.tool_calls == (("t", {"region": "eu", "verbose": None}),)
    invalid = conformance_options(
        "http://localhost:1/mcp",
        {"MCP_CONFORMANCE_SCENARIO": "http-invalid-tool-headers"},
        ProbeOptions(url="x"),
    )
    assert invalid.call_all_listed
    assert invalid.protocol_version is None
    echo = conformance_options(
        "http://localhost:1/mcp",
        {"MCP_CONFORMANCE_SCENARIO": "json-schema-2020-12-preservation"},
        ProbeOptions(url="x"),
    )
    assert echo.schema_echo == ("json_schema_echo", "json_schema_2020_12_tool")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_waiting_for_the_browser_in_vain_is_a_failed_step(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    callback = f"http://127.0.0.1:{_free_port()}/oauth/callback"
    code, text = run_probe(
        mcp_server.url, *LOOPBACK, "--redirect-uri", callback, "--wait", "1"
    )
    assert "Traceback" not in text
    assert "Open this URL to authorize" in text
    assert "Waiting up to 1 s for the browser" in text
    assert "[FAILED] authorization: no authorization arrived within 1 s" in text
    assert "fix: run `tether probe` again" in text
    assert code == 4  # authorization_required


def test_a_busy_callback_port_is_a_failed_step(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, text = run_probe(
            mcp_server.url,
            *LOOPBACK,
            "--redirect-uri",
            f"http://127.0.0.1:{port}/oauth/callback",
        )
    assert "Traceback" not in text
    assert f"cannot listen for the OAuth callback on 127.0.0.1:{port}" in text
    assert "[FAILED] authorization" in text
    assert code == 3  # configuration


def test_progress_on_a_terminal(
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_probe, "stderr_is_terminal", lambda: True)
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
        ],
    )
    assert result.exit_code == 0, result.output
    waits = [line for line in result.stderr.splitlines() if line.startswith("… ")]
    assert waits == [
        "… asking the server without a token",
        "… discovery and registration",
        "… the authorization",
        "… the token",
        "… tools/list",
        "… calling echo",
    ]
    # the report itself stays clean
    assert not any(line.startswith("… ") for line in result.stdout.splitlines())


def test_no_progress_lines_when_piped(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    code, report = run_json(mcp_server.url, *LOOPBACK, "--follow-redirects")
    assert code == 0  # the output parsed as JSON: nothing else was written
    assert report["ok"] is True
