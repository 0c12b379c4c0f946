"""Background jobs: proactive refresh elected across processes' Tethers (issue 10).

Two Tethers on one SQLite file stand for two workers; the job's lease row elects one of
them per round. Tokens are refreshed at the real oidc-provider (rotation on).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from hub.conftest import (
    LOOPBACK,
    FakeClock,
    MakeTether,
    connect,
    introspect,
    oauth_server,
    secret,
    stored,
)
from peers.fixture import MCPServer, Peers, free_port
from tether.errors import StorageError
from tether.store.crypto import KeyRing

pytestmark = pytest.mark.realservers

EVERY = timedelta(seconds=30)


async def test_one_worker_refreshes_due_connections_and_skips_dead_ones(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    auth = opaque_peers.auth_server
    ring, clock = KeyRing.generate(), FakeClock()
    a = await make_tether(key_ring=ring, clock=clock)
    b = await make_tether(key_ring=ring, clock=clock)
    due = await a.servers.create(oauth_server(opaque_peers), actor="admin")
    dead = await a.servers.create(
        oauth_server(opaque_peers, name="dead"), actor="admin"
    )
    await connect(a, due.name)
    await connect(a, dead.name)
    gone = await stored(a, dead.id)  # a dead grant: jobs never touch it
    await a.stores.connections.save(
        gone.replace(
            status="needs_reauth",
            access_token=None,
            refresh_token=SecretStr("kept-for-the-test"),
        ),
        expected_version=gone.version,
    )
    before = await stored(a, due.id)
    assert before.expires_at is not None
    clock.advance(before.expires_at - clock.now() - timedelta(seconds=10))

    ran = await asyncio.gather(
        a.jobs.run_once("refresh", every=EVERY),
        b.jobs.run_once("refresh", every=EVERY),
    )
    assert sorted(ran) == [False, True]  # one worker was elected
    after = await stored(a, due.id)
    assert after.status == "connected"
    assert secret(after.refresh_token) != secret(before.refresh_token)
    assert introspect(auth, secret(after.refresh_token))["active"] is True
    untouched = await stored(a, dead.id)
    assert untouched.status == "needs_reauth"
    assert untouched.version == gone.version + 1  # only the test's own write
    winner, loser = (a.jobs, b.jobs) if ran[0] else (b.jobs, a.jobs)
    done = winner.status["refresh"]
    assert done.ok == 1
    assert done.failed == 0
    # what the Jobs page and /metrics show: the round, its counts, the next run
    assert done.runs == 1
    assert done.last_outcome == "ok"
    assert (done.last.ok, done.last.failed, done.last.skipped) == (1, 0, 0)
    assert done.last_started == clock.now()
    assert done.last_finished == clock.now()
    assert done.next_run == clock.now() + EVERY
    skipped = loser.status["refresh"]
    assert (skipped.runs, skipped.lease_skips, skipped.last_outcome) == (0, 1, None)
    assert skipped.next_run == clock.now() + EVERY

    # nothing is due any more: the next round refreshes nothing
    await winner.run_once("refresh", every=EVERY)
    assert winner.status["refresh"].ok == 1
    assert winner.status["refresh"].last.ok == 0
    assert winner.status["refresh"].runs == 2
    assert (await stored(a, due.id)).version == after.version


async def test_the_lease_passes_to_another_worker_when_its_holder_stops(
    make_tether: MakeTether,
) -> None:
    clock = FakeClock()
    a = await make_tether(clock=clock)
    assert await a.jobs.run_once("tools", every=EVERY)
    other = a.jobs.__class__(a, holder="another-process")
    assert not await other.run_once("tools", every=EVERY)
    assert other.status["tools"].lease_skips == 1
    clock.advance(EVERY * 2)  # the first holder stopped extending its lease
    assert await other.run_once("tools", every=EVERY)


async def test_report_names_the_worker_holding_each_lease(
    make_tether: MakeTether,
) -> None:
    clock = FakeClock()
    a = await make_tether(clock=clock)
    assert await a.jobs.run_once("tools", every=EVERY)
    other = a.jobs.__class__(a, holder="another-process")
    mine = {r.status.name: r for r in await a.jobs.report()}
    theirs = {r.status.name: r for r in await other.report()}
    assert set(mine) == {"refresh", "tools", "health"}
    assert (mine["tools"].holder, mine["tools"].held_here) == (a.jobs.holder, True)
    assert (theirs["tools"].holder, theirs["tools"].held_here) == (a.jobs.holder, False)
    assert mine["refresh"].holder is None  # never run: nobody holds it
    assert mine["tools"].status.last_outcome == "ok"  # no servers: nothing failed
    clock.advance(EVERY * 2)
    assert (await a.jobs.report())[1].holder is None  # lapsed


async def test_health_rechecks_unhealthy_servers_and_skips_healthy_ones(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    plain = {"auth_mode": "none", "allow_networks": LOOPBACK}
    await tether.servers.create(
        {"name": "up", "url": open_mcp_server.url, **plain}, actor="admin"
    )
    await tether.servers.create(
        {"name": "down", "url": f"http://127.0.0.1:{free_port()}/mcp", **plain},
        actor="admin",
    )
    await tether.servers.create(
        oauth_server(open_mcp_server, name="per-user", per_user=True), actor="admin"
    )
    health = tether.jobs.status["health"]

    assert await tether.jobs.run_once("health", every=EVERY)
    assert health.last_outcome == "partial"  # one server failed, the round did not
    assert (health.last.ok, health.last.failed, health.last.skipped) == (1, 1, 1)
    assert health.errors == {"network": 1}

    assert await tether.jobs.run_once("health", every=EVERY)
    # "up" is healthy now and skipped; "down" is checked again
    assert (health.last.ok, health.last.failed, health.last.skipped) == (0, 1, 2)
    assert (health.ok, health.failed, health.skipped) == (1, 2, 3)


async def test_a_round_that_fails_as_a_whole_is_recorded_and_raised(
    make_tether: MakeTether, monkeypatch: pytest.MonkeyPatch
) -> None:
    tether = await make_tether()

    async def broken() -> list[Any]:
        raise StorageError("the database is gone")

    # error injection: a store failure a real SQLite file does not produce on demand
    monkeypatch.setattr(tether.stores.connections, "list", broken)
    with pytest.raises(StorageError):
        await tether.jobs.run_once("refresh", every=EVERY)
    status = tether.jobs.status["refresh"]
    assert (status.runs, status.last_outcome, status.last_error) == (
        1,
        "failed",
        "storage",
    )
    assert status.last_finished is not None
