"""``tether serve`` refuses bad settings before it starts anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    return CliRunner()


def test_plain_http_off_loopback_is_refused(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_PUBLIC_URL", "http://tether.example.com")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 3
    assert "must use https" in result.output
    assert "Traceback" not in result.output


def test_several_workers_need_postgresql(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "PostgreSQL" in result.output


def test_apikeys_role_is_checked(runner: CliRunner) -> None:
    result = runner.invoke(app, ["apikeys", "create", "x", "--role", "root"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["apikeys", "create", "bad name!", "--role", "app"])
    assert result.exit_code == 2
    assert "validation" in result.output
    result = runner.invoke(app, ["apikeys", "revoke", "nope"])
    assert result.exit_code == 2
    assert "no API key" in result.output


def test_apikeys_speak_json(runner: CliRunner) -> None:
    created = runner.invoke(
        app, ["apikeys", "create", "ops", "--role", "admin", "--json"]
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert (key["name"], key["role"], key["state"]) == ("ops", "admin", "active")
    assert key["key"].startswith(f"tk_{key['id']}_")
    listed = runner.invoke(app, ["apikeys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["id"] == key["id"]
    assert "key" not in entry
    assert "key_hash" not in entry
    revoked = runner.invoke(app, ["apikeys", "revoke", "ops", "--json"])
    assert json.loads(revoked.stdout) == {"revoked": "ops"}
    listed = runner.invoke(app, ["apikeys", "list", "--json"])
    assert json.loads(listed.stdout)[0]["state"] == "revoked"
