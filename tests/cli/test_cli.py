"""The CLI as a thin shell: commands, exit codes, and no secret in any output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peers.fixture import AuthServer, MCPServer
from tether.cli.main import app

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    return CliRunner()


def test_server_and_credential_lifecycle(runner: CliRunner, tmp_path: Path) -> None:
    added = runner.invoke(app, ["credentials", "add", "api"], input=SECRET + "\n")
    assert added.exit_code == 0, added.output
    server = runner.invoke(
        app,
        [
            "servers",
            "add",
            "local",
            "http://127.0.0.1:9/mcp",
            "--auth",
            "header",
            "--credential",
            "api",
            "--allow-network",
            "127.0.0.0/8",
        ],
    )
    assert server.exit_code == 0, server.output
    listed = runner.invoke(app, ["servers", "list"])
    assert "local" in listed.output
    shown = runner.invoke(app, ["servers", "show", "local", "--json"])
    creds = runner.invoke(app, ["credentials", "list", "--json"])
    audit = runner.invoke(app, ["audit", "--json"])
    for result in (listed, shown, creds, audit):
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert SECRET.encode() not in (tmp_path / "tether.db").read_bytes()
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0


def test_errors_have_codes_and_exit_codes(runner: CliRunner) -> None:
    missing = runner.invoke(app, ["servers", "show", "nope"])
    assert missing.exit_code == 2
    assert "not_found" in missing.output
    blocked = runner.invoke(app, ["servers", "add", "x", "https://10.0.0.1/mcp"])
    assert blocked.exit_code == 2
    assert "URL is not allowed" in blocked.output
    assert "private address" in blocked.output
    bad_args = runner.invoke(app, ["tools", "call", "x", "t", "--args", "[1]"])
    assert bad_args.exit_code == 2
    assert "JSON object" in bad_args.output


def test_unreachable_server_tool_call_is_a_model_visible_error(
    runner: CliRunner,
) -> None:
    runner.invoke(
        app,
        [
            "servers",
            "add",
            "dead",
            "http://127.0.0.1:9/mcp",
            "--allow-network",
            "127.0.0.0/8",
            "--timeout",
            "2",
        ],
    )
    result = runner.invoke(app, ["tools", "call", "dead", "echo"])
    assert result.exit_code == 1
    assert result.output.strip()


def keys(home: Path) -> list[str]:
    lines = (home / "keys").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_keys_add_and_rotate_reencrypt_every_secret(
    runner: CliRunner, tmp_path: Path
) -> None:
    assert (
        runner.invoke(app, ["credentials", "add", "api"], input=SECRET + "\n").exit_code
        == 0
    )
    before = keys(tmp_path)
    added = runner.invoke(app, ["keys", "add"])
    assert added.exit_code == 0, added.output
    after = keys(tmp_path)
    assert after[1:] == before
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 secrets" in rotated.output
    (tmp_path / "keys").write_text(after[0] + "\n")  # the old key is no longer needed
    listed = runner.invoke(app, ["credentials", "list"])
    assert listed.exit_code == 0, listed.output
    again = runner.invoke(app, ["keys", "rotate"])
    assert "re-encrypted 0 secrets" in again.output


def test_keys_add_refuses_keys_from_the_environment(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ENCRYPTION_KEYS", "a" * 44)
    result = runner.invoke(app, ["keys", "add"])
    assert result.exit_code == 2
    assert "TETHER_ENCRYPTION_KEYS" in result.output


@pytest.mark.realservers
def test_connect_follow_redirects_and_audit_names_the_operator(
    runner: CliRunner, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    added = runner.invoke(
        app,
        [
            "servers",
            "add",
            "peer",
            mcp_server.url,
            "--auth",
            "oauth",
            "--allow-network",
            "127.0.0.0/8",
        ],
    )
    assert added.exit_code == 0, added.output
    connected = runner.invoke(app, ["connect", "peer", "--follow-redirects", "--json"])
    assert connected.exit_code == 0, connected.output
    assert json.loads(connected.output)["status"] == "connected"
    events = json.loads(runner.invoke(app, ["audit", "--json"]).output)
    actors = {e["action"]: e["actor"] for e in events}
    assert actors["connection.start"] == "cli"
    assert actors["connection.connect"] == "cli"
    listed = runner.invoke(app, ["tools", "list", "peer"])
    assert "whoami" in listed.output
