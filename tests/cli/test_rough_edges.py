"""The CLI without rough edges: one clear line and the mapped exit code, never a traceback.

Also: settings come only from a ``.env`` the operator names, secrets never come from
argv, and every field of a server shows in the audit log's before and after.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from peers.fixture import AuthServer, MCPServer
from tether.cli import main as cli_main
from tether.cli.main import app
from tether.config import load_settings
from tether.errors import ConfigurationError

SECRET = "sk-live-0123456789abcdef"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", "127.0.0.0/8")
    return CliRunner()


def _clean(result: Result, code: int) -> str:
    """The result ended with ``code``, through the handler, in one clear line."""
    assert result.exit_code == code, result.output
    # CliRunner swallows an escaping exception into .exception: only SystemExit is ok.
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.output


def _tether(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The real entry point in its own process."""
    return subprocess.run(
        [sys.executable, "-c", "from tether.cli.main import main; main()", *args],
        env={**_base_env(), **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}


def _one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------- no tracebacks


def test_non_json_allow_networks_is_one_line(tmp_path: Path) -> None:
    env = {"TETHER_HOME": str(tmp_path), "TETHER_ALLOW_NETWORKS": '["10.0.0.0/8"'}
    line = _one_error_line(_tether("servers", "list", env=env), 3)
    assert "TETHER_ALLOW_NETWORKS" in line
    assert "[configuration]" in line


def test_allow_networks_takes_a_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", "127.0.0.0/8, 10.0.0.5")
    assert load_settings().allow_networks == ["127.0.0.0/8", "10.0.0.5"]
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    assert load_settings().allow_networks == ["127.0.0.0/8"]
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", "[1, 2]")
    with pytest.raises(ConfigurationError, match="TETHER_ALLOW_NETWORKS"):
        load_settings()


def test_a_bad_setting_never_echoes_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_FRESH_START", SECRET)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "TETHER_FRESH_START" in caught.value.message
    assert SECRET not in str(caught.value)


def test_non_ascii_key_file_is_one_line(tmp_path: Path) -> None:
    env = {"TETHER_HOME": str(tmp_path)}
    assert _tether("servers", "list", env=env).returncode == 0
    (tmp_path / "keys").write_bytes("clé\n".encode())
    line = _one_error_line(_tether("servers", "list", env=env), 3)
    assert str(tmp_path / "keys") in line
    assert "non-ASCII" in line


def test_a_damaged_database_is_refused_by_every_command(tmp_path: Path) -> None:
    env = {"TETHER_HOME": str(tmp_path)}
    assert _tether("credentials", "add", "api", env=env, stdin=SECRET).returncode == 0
    db = tmp_path / "tether.db"
    with db.open("r+b") as handle:  # 4 KB of random bytes at offset 8192
        handle.seek(8192)
        handle.write(bytes(range(256)) * 16)
    for command in (["servers", "list"], ["migrate"], ["keys", "rotate"]):
        line = _one_error_line(_tether(*command, env=env), 8)
        assert "fails its integrity check" in line
        assert "restore it from a backup" in line


def test_a_deleted_database_needs_fresh_start(
    runner: CliRunner, tmp_path: Path
) -> None:
    _clean(runner.invoke(app, ["servers", "list"]), 0)
    (tmp_path / "home" / "tether.db").unlink()
    out = _clean(runner.invoke(app, ["servers", "list"]), 8)
    assert "--fresh-start" in out
    _clean(runner.invoke(app, ["migrate"]), 8)  # not a way around it
    _clean(runner.invoke(app, ["--fresh-start", "servers", "list"]), 0)
    _clean(runner.invoke(app, ["servers", "list"]), 0)


def test_an_unexpected_exception_is_one_line_and_debug_shows_it(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"bug quoting {SECRET}")

    monkeypatch.setattr(cli_main, "open_tether", broken)
    out = _clean(runner.invoke(app, ["servers", "list"]), 1)
    assert "internal error (RuntimeError)" in out
    assert "--debug" in out
    assert SECRET not in out
    debug = runner.invoke(app, ["--debug", "servers", "list"])
    assert isinstance(debug.exception, RuntimeError)


def test_debug_raises_a_tether_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--debug", "servers", "show", "nope"])
    assert result.exception is not None
    assert type(result.exception).__name__ == "NotFound"


def test_usage_errors_stay_with_the_framework(runner: CliRunner) -> None:
    result = runner.invoke(app, ["servers", "add"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_version(runner: CliRunner) -> None:
    out = _clean(runner.invoke(app, ["--version"]), 0)
    assert out.startswith("tether ")
    done = _tether("--version", env={})
    assert done.returncode == 0
    assert done.stdout.strip() == out.strip()


def test_keys_generate_prints_a_usable_key(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = _clean(runner.invoke(app, ["keys", "generate"]), 0).strip()
    monkeypatch.setenv("TETHER_ENCRYPTION_KEYS", key)
    _clean(runner.invoke(app, ["credentials", "add", "api"], input=SECRET), 0)
    assert not (tmp_path / "home" / "keys").exists()
    out = _clean(runner.invoke(app, ["keys", "add"]), 2)
    assert "TETHER_ENCRYPTION_KEYS" in out
    assert "tether keys generate" in out


# ---------------------------------------------------------------------- connect


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _add_peer(runner: CliRunner, mcp_server: MCPServer) -> None:
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
    _clean(added, 0)


@pytest.mark.realservers
def test_connect_wait_timing_out_is_one_line(
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    auth_server: AuthServer,
    mcp_server: MCPServer,
) -> None:
    monkeypatch.setenv("TETHER_PUBLIC_URL", f"http://127.0.0.1:{_free_port()}")
    _add_peer(runner, mcp_server)
    out = _clean(runner.invoke(app, ["connect", "peer", "--wait", "1"]), 4)
    assert "Open this URL to authorize" in out
    assert "Waiting up to 1 s for the browser" in out
    assert "no authorization arrived within 1 s" in out
    assert "--wait" in out
    assert "[authorization_required]" in out


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.realservers
def test_connect_with_the_callback_port_busy_is_one_line(
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    busy_port: int,
    auth_server: AuthServer,
    mcp_server: MCPServer,
) -> None:
    monkeypatch.setenv("TETHER_PUBLIC_URL", f"http://127.0.0.1:{busy_port}")
    _add_peer(runner, mcp_server)
    out = _clean(runner.invoke(app, ["connect", "peer", "--wait", "600"]), 3)
    assert f"cannot listen for the OAuth callback on 127.0.0.1:{busy_port}" in out
    assert "TETHER_PUBLIC_URL" in out


# ---------------------------------------------------------------------- .env


def _env_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "untrusted"
    folder.mkdir()
    (folder / ".env").write_text(
        'TETHER_ALLOW_NETWORKS=["10.0.0.0/8"]\n'
        "TETHER_PUBLIC_URL=https://attacker.example\n"
    )
    return folder


_SHOW = (
    "from tether.config import load_settings; s = load_settings(); "
    "print(s.allow_networks, s.public_url)"
)


def test_a_dot_env_in_the_working_directory_is_not_read(tmp_path: Path) -> None:
    folder = _env_dir(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _SHOW],
        cwd=folder,
        env=_base_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "[] http://127.0.0.1:8470"
    # Through the CLI too: the private address stays refused.
    env = {"TETHER_HOME": str(tmp_path / "home")}
    added = _tether("servers", "add", "x", "https://10.0.0.1/mcp", env=env, cwd=folder)
    assert "private address" in _one_error_line(added, 2)


def test_a_named_dot_env_is_read(tmp_path: Path) -> None:
    folder = _env_dir(tmp_path)
    named = {**_base_env(), "TETHER_ENV_FILE": str(folder / ".env")}
    done = subprocess.run(
        [sys.executable, "-c", _SHOW],
        env=named,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "['10.0.0.0/8'] https://attacker.example"
    env = {"TETHER_HOME": str(tmp_path / "home")}
    added = _tether(
        "--env-file",
        str(folder / ".env"),
        "servers",
        "add",
        "x",
        "https://10.0.0.1/mcp",
        env=env,
    )
    assert added.returncode == 0, added.stderr


def test_the_environment_wins_over_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _env_dir(tmp_path)
    monkeypatch.setenv("TETHER_ENV_FILE", str(folder / ".env"))
    monkeypatch.setenv("TETHER_PUBLIC_URL", "http://127.0.0.1:9999")
    settings = load_settings()
    assert settings.public_url == "http://127.0.0.1:9999"
    assert settings.allow_networks == ["10.0.0.0/8"]


def test_a_named_dot_env_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    env = {"TETHER_HOME": str(tmp_path), "TETHER_ENV_FILE": str(tmp_path / "no.env")}
    line = _one_error_line(_tether("servers", "list", env=env), 3)
    assert "no.env does not exist" in line
    line = _one_error_line(
        _tether("--env-file", str(tmp_path / "x.env"), "servers", "list", env=env), 3
    )
    assert "x.env does not exist" in line


# ---------------------------------------------------------------------- credentials


def test_credentials_add_reads_stdin(runner: CliRunner, tmp_path: Path) -> None:
    out = _clean(runner.invoke(app, ["credentials", "add", "key"], input=PEM + "\n"), 0)
    assert "stored credential key" in out
    assert PEM not in out
    db = (tmp_path / "home" / "tether.db").read_bytes()
    assert b"MIIBVAIBADANBgkqhkiG9w0BAQEFAASC" not in db
    assert stored_value(tmp_path / "home", "key") == PEM  # every line, no newline


def stored_value(home: Path, name: str) -> str:
    import asyncio

    from tether.cli.runtime import open_tether

    async def read() -> str:
        settings = load_settings(home=home)
        async with open_tether(settings) as tether:
            record = await tether.credentials.get_record(name)
            return record.value.get_secret_value()

    return asyncio.run(read())


def test_credentials_add_prompts_hidden_at_a_terminal(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cli_main, "_stdin_is_terminal", lambda: True)
    result = runner.invoke(app, ["credentials", "add", "api"], input=SECRET + "\n")
    out = _clean(result, 0)
    assert "Value" in out
    assert SECRET not in out  # not echoed
    assert stored_value(tmp_path / "home", "api") == SECRET


def test_credentials_add_refuses_a_value_on_the_command_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = _clean(
        runner.invoke(app, ["credentials", "add", "api", "--value", SECRET]), 2
    )
    assert "--value is not accepted" in out
    assert "stdin" in out or "pipe" in out
    assert SECRET not in out
    listed = _clean(runner.invoke(app, ["credentials", "list", "--json"]), 0)
    assert json.loads(listed) == []


def test_credentials_add_refuses_an_empty_value(runner: CliRunner) -> None:
    out = _clean(runner.invoke(app, ["credentials", "add", "api"], input="\n"), 2)
    assert "no value" in out


def test_credentials_add_in_a_subprocess_reads_a_pipe(tmp_path: Path) -> None:
    env = {"TETHER_HOME": str(tmp_path)}
    done = _tether("credentials", "add", "api", env=env, stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert stored_value(tmp_path, "api") == SECRET


# ---------------------------------------------------------------------- audit


def test_audit_shows_every_server_field_before_and_after(runner: CliRunner) -> None:
    _clean(runner.invoke(app, ["credentials", "add", "jwt"], input=SECRET), 0)
    _clean(runner.invoke(app, ["credentials", "add", "idp"], input=SECRET + "2"), 0)
    added = runner.invoke(
        app,
        [
            "servers",
            "add",
            "wl",
            "http://127.0.0.1:9/mcp",
            "--auth",
            "oauth",
            "--grant",
            "jwt_bearer",
            "--assertion-credential",
            "jwt",
            "--allow-network",
            "127.0.0.0/8",
        ],
    )
    _clean(added, 0)
    changed = runner.invoke(
        app,
        [
            "servers",
            "set",
            "wl",
            'oauth.grant="enterprise"',
            'oauth.client_id="tether"',
            'oauth.idp_token_endpoint="http://127.0.0.1:9/token"',
            'oauth.idp_client_id="tether-at-idp"',
            "oauth.dpop=always",
        ],
    )
    _clean(changed, 0)
    events = json.loads(_clean(runner.invoke(app, ["audit", "--json"]), 0))
    update = next(e for e in events if e["action"] == "server.update")
    before, after = update["before"]["oauth"], update["after"]["oauth"]
    assert (before["grant"], after["grant"]) == ("jwt_bearer", "enterprise")
    assert (before["dpop"], after["dpop"]) == ("never", "always")
    assert (before["idp_token_endpoint"], after["idp_token_endpoint"]) == (
        None,
        "http://127.0.0.1:9/token",
    )
    assert (before["idp_client_id"], after["idp_client_id"]) == (None, "tether-at-idp")
    assert before["assertion_credential_id"] == "********"
    create = next(e for e in events if e["action"] == "server.create")
    assert create["after"]["oauth"]["assertion_credential_id"] == "********"
    assert SECRET not in json.dumps(events)


def test_servers_add_works_offline_with_a_warning(runner: CliRunner) -> None:
    # .invalid never resolves (RFC 6761 §6.4): registration warns, connect re-checks.
    url = "https://mcp.tether-test.invalid/mcp"
    out = _clean(runner.invoke(app, ["servers", "add", "off", url]), 0)
    assert "warning: could not resolve mcp.tether-test.invalid" in out
    assert "checked again at connect" in out
    listed = _clean(runner.invoke(app, ["tools", "list", "off"]), 7)
    assert "could not resolve" in listed
    assert "[network]" in listed
    # A refused address is still refused at registration.
    blocked = _clean(
        runner.invoke(app, ["servers", "add", "b", "https://10.0.0.1/"]), 2
    )
    assert "private address" in blocked


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tether")  # the installed entry point
    done = subprocess.run(
        [str(script)],
        env={
            **_base_env(),
            "TETHER_HOME": str(tmp_path),
            "_TETHER_COMPLETE": "complete_bash",
            "COMP_WORDS": "tether creden",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["credentials"]
    shown = _tether("--show-completion", "bash", env={})  # named: nothing detected
    assert shown.returncode == 0, shown.stderr
    assert "complete" in shown.stdout
