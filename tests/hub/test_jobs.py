"""Background jobs: proactive refresh elected across processes' Tethers (issue 10).

Two Tethers on one SQLite file stand for two workers; the job's lease row elects one of
them per round. Tokens are refreshed at the real oidc-provider (rotation on).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import SecretStr

from hub.conftest import (
    FakeClock,
    MakeTether,
    connect,
    introspect,
    oauth_server,
    secret,
    stored,
)
from peers.fixture import Peers
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
    winner = a.jobs if ran[0] else b.jobs
    assert winner.status["refresh"].ok == 1
    assert winner.status["refresh"].failed == 0

    # nothing is due any more: the next round refreshes nothing
    await winner.run_once("refresh", every=EVERY)
    assert winner.status["refresh"].ok == 1
    assert (await stored(a, due.id)).version == after.version


async def test_the_lease_passes_to_another_worker_when_its_holder_stops(
    make_tether: MakeTether,
) -> None:
    clock = FakeClock()
    a = await make_tether(clock=clock)
    assert await a.jobs.run_once("tools", every=EVERY)
    other = a.jobs.__class__(a, holder="another-process")
    assert not await other.run_once("tools", every=EVERY)
    assert other.status["tools"].skipped == 1
    clock.advance(EVERY * 2)  # the first holder stopped extending its lease
    assert await other.run_once("tools", every=EVERY)
