"""Paginated listings in the CLI and the library API (issue 9): --limit/--after."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from tether.cli.main import app
from tether.errors import ValidationFailed
from tether.hub.tether import Tether
from tether.store.base import Connection
from tether.store.crypto import KeyRing


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.setenv("TETHER_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    return CliRunner()


def cursor(stderr: str) -> str:
    """The cursor the CLI printed on stderr."""
    (line,) = [x for x in stderr.splitlines() if x.startswith("more: pass --after ")]
    return line.removeprefix("more: pass --after ").strip()


def test_servers_and_audit_page_through(runner: CliRunner) -> None:
    for name in ("gamma", "alpha", "beta"):
        added = runner.invoke(
            app, ["servers", "add", name, f"http://127.0.0.1:9/{name}"]
        )
        assert added.exit_code == 0, added.output
    first = runner.invoke(app, ["servers", "list", "--limit", "2", "--json"])
    assert first.exit_code == 0, first.output
    assert [s["name"] for s in json.loads(first.stdout)] == ["alpha", "beta"]
    rest = runner.invoke(
        app, ["servers", "list", "--json", "--after", cursor(first.stderr)]
    )
    assert [s["name"] for s in json.loads(rest.stdout)] == ["gamma"]
    assert "more:" not in rest.stderr
    everything = runner.invoke(app, ["servers", "list"])
    assert "more:" not in everything.stderr
    assert everything.stdout.count("http://127.0.0.1:9/") == 3

    newest = runner.invoke(app, ["audit", "--limit", "2", "--json"])
    page = json.loads(newest.stdout)
    assert {e["action"] for e in page} == {"server.create"}
    older = runner.invoke(
        app, ["audit", "--limit", "2", "--json", "--after", cursor(newest.stderr)]
    )
    ids = [e["id"] for e in page] + [e["id"] for e in json.loads(older.stdout)]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 3  # three server.create events, each once

    bad = runner.invoke(app, ["servers", "list", "--after", "bogus!"])
    assert bad.exit_code == 2
    assert "cursor is not one this listing returned" in bad.output
    assert "[validation]" in bad.output


async def test_connections_listed_a_page_at_a_time_without_tokens(
    tmp_path: Path,
) -> None:
    tether = await Tether.open(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        key_ring=KeyRing.generate(),
        redirect_uri="http://127.0.0.1:8470/oauth/callback",
        allow_networks=["127.0.0.0/8"],
    )
    async with tether:
        server = await tether.servers.create(
            {
                "name": "personal",
                "url": "http://127.0.0.1:9/mcp",
                "auth_mode": "oauth",
                "allow_networks": ["127.0.0.0/8"],
                "oauth": {"per_user": True},
            },
            actor="admin",
        )
        for user in ("u3", "u1", "u2"):
            await tether.stores.connections.save(
                Connection(
                    server_id=server.id,
                    subject=user,
                    status="connected",
                    access_token=SecretStr(f"token-{user}"),
                    connected_at=datetime.now(UTC),
                ),
                expected_version=0,
            )
        first = await tether.list_connections("personal", limit=2)
        assert [(c.server_name, c.subject) for c in first.items] == [
            ("personal", "u1"),
            ("personal", "u2"),
        ]
        assert "token-" not in json.dumps([c.to_dict() for c in first.items])
        rest = await tether.list_connections(limit=2, after=first.next)
        assert [c.subject for c in rest.items] == ["u3"]
        assert rest.next is None
        events = await tether.audit_page(server_ref="personal", limit=1)
        assert [e.action for e in events.items] == ["server.create"]
        assert events.next is None
        with pytest.raises(ValidationFailed):
            await tether.list_servers(limit=0)
