"""Commands added for a CLI without rough edges: ``--json`` everywhere,
``credentials update``, ``toolsets list/remove/import``, ``keys generate``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from peers.fixture import MCPServer
from tether.cli.main import app
from tether.cli.runtime import open_tether
from tether.config import load_settings
from tether.store.crypto import KeyRing

SECRET = "sk-live-0123456789abcdef"
NEW_SECRET = "sk-live-fedcba9876543210"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", "127.0.0.0/8")
    return CliRunner()


def ok(result: Result, code: int = 0) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.output


def as_json(result: Result, code: int = 0) -> Any:
    return json.loads(ok(result, code))


def add_dead_server(runner: CliRunner, name: str = "dead") -> None:
    ok(
        runner.invoke(
            app,
            [
                "servers",
                "add",
                name,
                "http://127.0.0.1:9/mcp",
                "--allow-network",
                "127.0.0.0/8",
                "--timeout",
                "2",
            ],
        )
    )


# ---------------------------------------------------------------------- credentials


def test_credentials_update_renames_redescribes_and_replaces(
    runner: CliRunner, tmp_path: Path
) -> None:
    added = as_json(runner.invoke(app, ["credentials", "add", "api", "--json"], SECRET))
    assert added["name"] == "api"
    assert "value" not in added
    out = ok(
        runner.invoke(
            app,
            ["credentials", "update", "api", "--rename", "gh", "--description", "d"],
        )
    )
    assert "updated credential gh" in out
    replaced = as_json(
        runner.invoke(
            app, ["credentials", "update", "gh", "--new-value", "--json"], NEW_SECRET
        )
    )
    assert replaced["id"] == added["id"]
    assert replaced["description"] == "d"
    listed = as_json(runner.invoke(app, ["credentials", "list", "--json"]))
    assert [c["name"] for c in listed] == ["gh"]
    events = as_json(runner.invoke(app, ["audit", "--json"]))
    updates = [e for e in events if e["action"] == "credential.update"]
    assert len(updates) == 2
    text = json.dumps(events)
    assert SECRET not in text
    assert NEW_SECRET not in text
    assert stored_value(tmp_path, "gh") == NEW_SECRET


def stored_value(home: Path, name: str) -> str:
    async def read() -> str:
        async with open_tether(load_settings(home=home)) as tether:
            record = await tether.credentials.get_record(name)
            return record.value.get_secret_value()

    return asyncio.run(read())


def test_credentials_update_refuses_a_value_argument_and_an_empty_change(
    runner: CliRunner,
) -> None:
    ok(runner.invoke(app, ["credentials", "add", "api"], SECRET))
    out = ok(
        runner.invoke(app, ["credentials", "update", "api", "--value", NEW_SECRET]), 2
    )
    assert "--value is not accepted" in out
    assert "--new-value" in out
    assert NEW_SECRET not in out
    out = ok(runner.invoke(app, ["credentials", "update", "api"]), 2)
    assert "nothing to change" in out
    out = ok(runner.invoke(app, ["credentials", "update", "nope", "--rename", "x"]), 2)
    assert "[not_found]" in out


def test_credentials_remove_json(runner: CliRunner) -> None:
    ok(runner.invoke(app, ["credentials", "add", "api"], SECRET))
    assert as_json(runner.invoke(app, ["credentials", "remove", "api", "--json"])) == {
        "removed": "api"
    }


# ---------------------------------------------------------------------- keys, migrate


def test_keys_and_migrate_speak_json(runner: CliRunner) -> None:
    generated = as_json(runner.invoke(app, ["keys", "generate", "--json"]))
    assert generated["key_id"] == KeyRing.from_string(generated["key"]).primary_key_id
    assert as_json(runner.invoke(app, ["migrate", "--json"])) == {"migrated": True}
    ok(runner.invoke(app, ["credentials", "add", "api"], SECRET))
    added = as_json(runner.invoke(app, ["keys", "add", "--json"]))
    assert len(added["key_ids"]) == 2
    assert added["primary_key_id"] == added["key_ids"][0]
    rotated = as_json(runner.invoke(app, ["keys", "rotate", "--json"]))
    assert rotated["key_id"] == added["primary_key_id"]
    assert rotated["reencrypted"]["credential"] == 1


# ---------------------------------------------------------------------- servers


def test_servers_remove_and_disconnect_json(runner: CliRunner) -> None:
    add_dead_server(runner)
    disconnected = as_json(runner.invoke(app, ["disconnect", "dead", "--json"]))
    assert disconnected["disconnected"] == "dead"
    assert isinstance(disconnected["revocation"], list)
    assert as_json(runner.invoke(app, ["servers", "remove", "dead", "--json"])) == {
        "removed": "dead"
    }
    assert as_json(runner.invoke(app, ["servers", "list", "--json"])) == []


def test_a_failed_tool_call_in_json(runner: CliRunner) -> None:
    add_dead_server(runner)
    result = as_json(runner.invoke(app, ["tools", "call", "dead", "echo", "--json"]), 1)
    assert result["is_error"] is True
    assert result["error_code"]
    assert result["text"]


# ---------------------------------------------------------------------- toolsets


def test_toolsets_list_export_import_remove(runner: CliRunner, tmp_path: Path) -> None:
    add_dead_server(runner)
    add_dead_server(runner, "other")
    assert "no toolsets" in ok(runner.invoke(app, ["toolsets", "list"]))
    created = as_json(
        runner.invoke(
            app,
            [
                "toolsets",
                "create",
                "agent",
                "--server",
                "dead",
                "--server",
                "other",
                "--json",
            ],
        )
    )
    assert created == {
        "name": "agent",
        "description": "",
        "servers": [
            {"server": "dead", "tools": None},
            {"server": "other", "tools": None},
        ],
    }
    exported = as_json(runner.invoke(app, ["toolsets", "export", "agent"]))
    assert exported == created

    file = tmp_path / "copy.json"
    file.write_text(json.dumps({**exported, "name": "from-file"}))
    out = ok(runner.invoke(app, ["toolsets", "import", str(file)]))
    assert "imported toolset from-file" in out
    piped = as_json(
        runner.invoke(
            app,
            ["toolsets", "import", "-", "--json"],
            json.dumps({**exported, "name": "from-stdin"}),
        )
    )
    assert piped["name"] == "from-stdin"
    assert piped["servers"] == exported["servers"]

    listed = as_json(runner.invoke(app, ["toolsets", "list", "--json"]))
    assert sorted(t["name"] for t in listed) == ["agent", "from-file", "from-stdin"]
    text = ok(runner.invoke(app, ["toolsets", "list"]))
    assert "agent" in text
    assert "dead, other" in text

    assert as_json(runner.invoke(app, ["toolsets", "remove", "agent", "--json"])) == {
        "removed": "agent"
    }
    assert "removed toolset from-file" in ok(
        runner.invoke(app, ["toolsets", "remove", "from-file"])
    )
    listed = as_json(runner.invoke(app, ["toolsets", "list", "--json"]))
    assert [t["name"] for t in listed] == ["from-stdin"]
    # servers and their records are untouched by removing a toolset
    assert len(as_json(runner.invoke(app, ["servers", "list", "--json"]))) == 2


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_toolsets_import_refuses_what_is_not_an_export(
    runner: CliRunner, given: str, says: str
) -> None:
    out = ok(runner.invoke(app, ["toolsets", "import", "-"], given), 2)
    assert says in out


def test_toolsets_import_of_a_missing_file_or_server(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = ok(runner.invoke(app, ["toolsets", "import", str(tmp_path / "no.json")]), 2)
    assert "cannot read" in out
    data = {"name": "t", "servers": [{"server": "ghost", "tools": None}]}
    out = ok(runner.invoke(app, ["toolsets", "import", "-"], json.dumps(data)), 2)
    assert "ghost" in out
    assert as_json(runner.invoke(app, ["toolsets", "list", "--json"])) == []


def test_toolsets_remove_unknown_is_not_found(runner: CliRunner) -> None:
    out = ok(runner.invoke(app, ["toolsets", "remove", "nope"]), 2)
    assert "[not_found]" in out


@pytest.mark.realservers
def test_tool_text_reaches_the_terminal_without_escape_sequences(
    runner: CliRunner, open_mcp_server: MCPServer
) -> None:
    ok(
        runner.invoke(
            app,
            [
                "servers",
                "add",
                "open",
                open_mcp_server.url,
                "--allow-network",
                "127.0.0.0/8",
            ],
        )
    )
    hostile = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m\nsecond\tline"
    args = json.dumps({"text": hostile})
    out = ok(runner.invoke(app, ["tools", "call", "open", "echo", "--args", args]))
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "red" in out
    assert "\nsecond\tline" in out
    raw = as_json(
        runner.invoke(app, ["tools", "call", "open", "echo", "--args", args, "--json"])
    )
    assert raw["text"] == hostile  # machines get the exact text, JSON-escaped


@pytest.mark.realservers
def test_tool_progress_is_shown_and_missing_things_are_named(
    runner: CliRunner, open_mcp_server: MCPServer
) -> None:
    ok(
        runner.invoke(
            app,
            [
                "servers",
                "add",
                "open",
                open_mcp_server.url,
                "--allow-network",
                "127.0.0.0/8",
            ],
        )
    )
    args = json.dumps({"seconds": 0.2, "steps": 3})
    out = ok(runner.invoke(app, ["tools", "call", "open", "slow", "--args", args]))
    assert "progress: 1/3 step 1/3" in out
    assert "progress: 3/3 step 3/3" in out
    assert "slept 0.2s in 3 steps" in out
    ok(runner.invoke(app, ["toolsets", "create", "agent", "--server", "open"]))
    out = ok(runner.invoke(app, ["toolsets", "call", "agent", "slow", "--args", args]))
    assert "progress: 3/3" in out
    missing_server = ok(runner.invoke(app, ["tools", "call", "nope", "echo"]), 2)
    assert "no server 'nope'" in missing_server
    assert "no tool with this name" not in missing_server.lower()
    missing_set = ok(runner.invoke(app, ["toolsets", "call", "nope", "echo"]), 2)
    assert "no toolset 'nope' [not_found]" in missing_set


def test_every_command_takes_json() -> None:
    """Issue 10 item 9: ``--json`` on every command (``serve`` and ``demo`` run services)."""
    import typer.main

    root: Any = typer.main.get_command(app)  # typer's own (vendored) click types
    ctx = type(root).context_class(root)
    missing: list[str] = []
    seen = 0

    def walk(command: Any, path: list[str]) -> None:
        nonlocal seen
        if hasattr(command, "list_commands"):  # a group
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
            return
        seen += 1
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        if "--json" not in options and path not in (["serve"], ["demo"]):
            missing.append(" ".join(path))

    walk(root, [])
    assert seen > 30
    assert missing == []


async def test_a_long_tool_call_says_it_still_waits() -> None:
    from tether.cli.tools import _waiting

    lines: list[str] = []
    two = asyncio.Event()

    def note(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            two.set()

    async def call() -> str:
        await two.wait()  # the call "runs" until two notes were printed
        return "done"

    assert await _waiting("slow", call(), every=0.001, note=note) == "done"
    assert lines[:2] == [
        "… still waiting for slow (0.001 s)",
        "… still waiting for slow (0.002 s)",
    ]


async def test_no_waiting_notes_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tether.cli import tools

    def never(line: str) -> None:
        raise AssertionError(f"printed off a terminal: {line}")

    monkeypatch.setattr(tools, "_note", never)
    monkeypatch.setattr(tools, "_stderr_is_terminal", lambda: False)

    async def call() -> str:
        await asyncio.sleep(0.05)  # fifty periods of the would-be ticker
        return "done"

    assert await tools._waiting("quiet", call(), every=0.001) == "done"
    assert capsys.readouterr().err == ""
