"""kill -9 during a URL change, a disconnect and a connect's completion (issue 11; DUR-1).

Each flow runs in its own OS process (``grants.worker flow``) against the real peers
(oidc-provider rotating refresh tokens, the SDK MCP server) and is SIGKILLed at a seeded
random point. A fresh Tether then opens the database (replaying the token journal,
DUR-2) and must find the grant intact, or cleanly disconnected / ``needs_reauth``, with
no token ever sent to the wrong place. kill -9 mid-refresh is
``tests/grants/test_kill.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faults.flows import FlowTrial, Listener, kill_flow, options
from grants.harness import Grant, create_grant, database, stored, tether_on
from hub.conftest import authorize, connect, introspect
from peers.fixture import Peers
from store.conftest import SKIP_PG
from tether.errors import AuthorizationRequired, TetherError
from tether.hub.tether import Tether

pytestmark = pytest.mark.realservers

BACKENDS = ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, SKIP_PG])]
SEED = 20261202
CONFIG_TRIALS = 30
FLOW_TRIALS = 12


async def live(grant: Grant, tether: Tether) -> bool:
    """The stored refresh token is active at the AS and a tool call works."""
    conn = await stored(tether, grant.server_id)
    if conn.refresh_token is None or conn.status != "connected":
        return False
    if not introspect(grant.auth, conn.refresh_token.get_secret_value())["active"]:
        return False
    result = await tether.call_tool(grant.server_name, "echo", {"text": "alive"})
    return not result.is_error


async def reconnect(grant: Grant, tether: Tether) -> None:
    """A live grant for the next trial (a connect, unless it is alive already)."""
    if not await live(grant, tether):
        await connect(tether, grant.server_name)
        assert await live(grant, tether)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_url_change_never_sends_old_tokens_to_the_new_url(
    backend: str, storm_peers: Peers, tmp_path: Path
) -> None:
    """>= 30 kills of ``servers set NAME url=...``: URL and grant epoch change together."""
    opts = options(tmp_path)
    async with database(backend, tmp_path) as url, Listener.running() as new:
        grant = await create_grant(storm_peers, url, tmp_path, name="move")
        old_url = storm_peers.mcp.url

        async def prepare(index: int) -> dict[str, Any]:
            return {
                "flow": "update",
                "changes": {"url": new.url},
                "open_kwargs": opts,
            }

        async def judge(index: int, seen: list[str], kill_ms: float) -> FlowTrial:
            async with tether_on(grant, opts) as tether:
                server = await tether.servers.get(grant.server_name)
                conn = await stored(tether, grant.server_id)
                assert server.url in (old_url, new.url)
                if server.url == old_url:
                    # the change never committed: the grant is untouched and works
                    assert conn.grant_epoch == server.grant_epoch
                    assert await live(grant, tether), seen
                    outcome = "unchanged, grant intact"
                else:
                    assert conn.grant_epoch != server.grant_epoch or (
                        conn.access_token is None and conn.refresh_token is None
                    ), seen
                    result = await tether.call_tool(grant.server_name, "echo", {})
                    assert result.is_error
                    assert result.error_code == "authorization_required", result.text
                    outcome = "changed, grant invalidated"
                    await tether.servers.update(
                        grant.server_name, {"url": old_url}, actor="test"
                    )
                assert new.authorizations() == [], new.authorizations()
                await reconnect(grant, tether)
            return FlowTrial(
                index, kill_ms, seen[-1] if seen else "before start", outcome
            )

        report = await kill_flow(
            grant,
            "URL change",
            trials=CONFIG_TRIALS,
            seed=SEED,
            prepare=prepare,
            judge=judge,
        )
    print(f"\nkill -9 during a URL change ({backend}):\n{report.table()}")
    assert len(report.trials) >= 30
    assert new.authorizations() == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_disconnect_leaves_the_grant_intact_or_cleanly_gone(
    backend: str, storm_peers: Peers, tmp_path: Path
) -> None:
    opts = options(tmp_path)
    async with database(backend, tmp_path) as url:
        grant = await create_grant(storm_peers, url, tmp_path, name="bye")

        async def prepare(index: int) -> dict[str, Any]:
            return {"flow": "disconnect", "open_kwargs": opts}

        async def judge(index: int, seen: list[str], kill_ms: float) -> FlowTrial:
            async with tether_on(grant, opts) as tether:
                conn = await stored(tether, grant.server_id)
                if await live(grant, tether):
                    outcome = "grant intact"
                elif conn.access_token is None:
                    assert conn.status == "disconnected", conn.status
                    assert conn.refresh_token is None
                    outcome = "disconnected"
                else:
                    # revoked at the AS, killed before the local clear: the refresh
                    # token is dead, so the next refresh ends cleanly in needs_reauth
                    # (the access token works until it expires; the AS's choice)
                    with pytest.raises(AuthorizationRequired):
                        await tether.refresh(grant.server_name)
                    conn = await stored(tether, grant.server_id)
                    assert conn.status == "needs_reauth", conn.status
                    assert conn.access_token is None
                    assert conn.refresh_token is None
                    outcome = "revoked, not cleared: needs_reauth at the next refresh"
                await reconnect(grant, tether)
            return FlowTrial(
                index, kill_ms, seen[-1] if seen else "before start", outcome
            )

        report = await kill_flow(
            grant,
            "disconnect",
            trials=FLOW_TRIALS,
            seed=SEED,
            prepare=prepare,
            judge=judge,
        )
    print(f"\nkill -9 during a disconnect ({backend}):\n{report.table()}")
    assert len(report.trials) == FLOW_TRIALS


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_connect_completion_loses_nothing_once_journaled(
    backend: str, storm_peers: Peers, tmp_path: Path
) -> None:
    """A code exchanged and journaled is stored by the next start (DUR-2)."""
    opts = options(tmp_path)
    async with database(backend, tmp_path) as url:
        grant = await create_grant(storm_peers, url, tmp_path, name="hello")

        async def prepare(index: int) -> dict[str, Any]:
            async with tether_on(grant, opts) as tether:
                await tether.disconnect(grant.server_name, actor="test")
                params = await authorize(tether, grant.server_name)
            return {
                "flow": "complete",
                "params": params,
                "user": "admin",
                "open_kwargs": opts,
            }

        async def judge(index: int, seen: list[str], kill_ms: float) -> FlowTrial:
            async with tether_on(grant, opts) as tether:
                replays = tether.connections.recovery.replayed
                journaled = "journal" in seen
                if await live(grant, tether):
                    applied = any(r.outcome == "applied" for r in replays)
                    outcome = "connected (journal replay)" if applied else "connected"
                    lost = False
                else:
                    conn = await stored(tether, grant.server_id)
                    assert conn.access_token is None, conn.status
                    assert not journaled, seen  # a journaled answer is never lost
                    outcome = f"not connected ({conn.status})"
                    lost = "token:sent" in seen  # the AS may have issued tokens
                try:
                    await reconnect(grant, tether)
                except TetherError as exc:  # pragma: no cover - reported, not hidden
                    raise AssertionError(f"no clean reconnect after {seen}") from exc
            phase = seen[-1] if seen else "before start"
            return FlowTrial(index, kill_ms, phase, outcome, lost)

        report = await kill_flow(
            grant,
            "connect completion",
            trials=FLOW_TRIALS,
            seed=SEED,
            prepare=prepare,
            judge=judge,
        )
    print(f"\nkill -9 during connect completion ({backend}):\n{report.table()}")
    assert len(report.trials) == FLOW_TRIALS
    for trial in report.trials:
        if trial.lost:  # only inside POST sent .. journaled
            assert trial.phase in ("token:sent", "token:answered"), report.table()
