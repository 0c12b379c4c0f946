"""How a refresh failure is classified, and writers that race a refresh (issue 7).

A real authorization server does not answer 503, 429 or Slack's HTTP 200 error on
demand, nor let a test write between its answer and our commit, so the fetcher is
scripted here (error injection). Everything else is the real hub and a real store;
the same behaviour against oidc-provider is in ``test_e2e_grants.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from hub.fakes import FakeFetcher, Sent, hub_context, seed_grant
from tether.errors import (
    AuthorizationRequired,
    NetworkError,
    PermissionDenied,
    RemoteError,
    StepUpRequired,
)
from tether.hub.connections import Connections
from tether.hub.tools import HubTokenSource
from tether.mcp.auth import AccessToken
from tether.net.fetch import HttpResponse
from tether.oauth.challenge import BearerChallenge
from tether.store.base import (
    Connection,
    RegistrationSource,
    ServerRecord,
    Stores,
)
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

ISSUER = "https://as.example"
TOKEN = f"{ISSUER}/token"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

Answer = HttpResponse | Exception
Hook = Callable[[], Awaitable[None]]


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


class ScriptedAS(FakeFetcher):
    """Answers token requests from a script; ``before`` runs inside the request."""

    def __init__(self, script: list[Answer], before: Hook | None = None) -> None:
        super().__init__()
        self.script = script
        self.before = before

    def answer(self, sent: Sent) -> HttpResponse:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status: int, body: Mapping[str, Any], **headers: str) -> HttpResponse:
    values = {k.replace("_", "-"): [v] for k, v in headers.items()}
    values["content-type"] = ["application/json"]
    return HttpResponse(status, values, json.dumps(body).encode(), TOKEN)


def tokens(n: int) -> HttpResponse:
    return answer(
        200,
        {
            "access_token": f"at-{n}",
            "refresh_token": f"rt-{n}",
            "token_type": "Bearer",
            "expires_in": 3600,
        },
    )


class World:
    """A connected server whose access token has expired, on memory stores."""

    def __init__(self, fetcher: ScriptedAS, source: RegistrationSource) -> None:
        self.clock = Clock()
        self.stores: Stores = open_memory_stores(
            KeyRing.generate(), now=self.clock.now
        )[0]
        self.fetcher = fetcher
        self.source = source
        self.ctx = hub_context(self.stores, fetcher, self.clock)
        self.conns = Connections(self.ctx)
        self.server = ServerRecord(
            id="s1", name="srv", url="https://mcp.example/mcp", auth_mode="oauth"
        )

    async def setup(self) -> World:
        await seed_grant(
            self.stores,
            self.server,
            Connection(
                server_id="s1",
                subject="shared",
                status="connected",
                access_token=SecretStr("at-0"),
                refresh_token=SecretStr("rt-0"),
                expires_at=T0 - timedelta(seconds=1),
                connected_at=T0 - timedelta(hours=1),
                scopes=("read",),
                issuer=ISSUER,
                client_id="c1",
            ),
            endpoints={"token_endpoint": TOKEN},
            fetched_at=T0,
            source=self.source,
        )
        return self

    async def stored(self) -> Connection:
        conn = await self.stores.connections.get("s1", "shared")
        assert conn is not None
        return conn

    async def refresh(self) -> Connection:
        return await self.conns.usable(self.server, "shared")

    async def actions(self) -> list[str]:
        return [e.action for e in await self.stores.audit.list()]


async def world(
    script: list[Answer],
    *,
    before: Hook | None = None,
    source: RegistrationSource = "manual",
) -> World:
    return await World(ScriptedAS(script, before), source).setup()


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


# --------------------------------------------------------------------- transient


@pytest.mark.parametrize(
    ("failure", "expected_wait"),
    [
        (answer(503, {}, retry_after="120"), 120),
        (answer(429, {"error": "slow_down"}, retry_after="30"), 30),
        (answer(503, {"error": "temporarily_unavailable"}), 5),
        (answer(400, {"error": "server_error"}), 5),
        (answer(502, {}, retry_after="garbled ²"), 5),
        (NetworkError("connection refused", step="token"), 5),
    ],
)
async def test_transient_failures_keep_the_tokens_and_back_off(
    failure: Answer, expected_wait: int
) -> None:
    w = await world([failure])
    with pytest.raises((NetworkError, RemoteError)):
        await w.refresh()
    conn = await w.stored()
    assert conn.status == "refresh_failed"
    assert secret(conn.refresh_token) == "rt-0"  # rule 2: tokens kept
    assert secret(conn.access_token) == "at-0"
    assert conn.retry_at == T0 + timedelta(seconds=expected_wait)
    assert "connection.refresh_failed" in await w.actions()

    # within the back-off the AS is not asked again: the caller gets a clear error
    with pytest.raises(NetworkError, match="next try") as caught:
        await w.refresh()
    assert caught.value.details["retry_at"] == conn.retry_at.isoformat()
    assert len(w.fetcher.requests) == 1


async def test_back_off_doubles_and_a_success_clears_it() -> None:
    w = await world([NetworkError("down"), NetworkError("down"), tokens(1)])
    with pytest.raises(NetworkError):
        await w.refresh()
    first = (await w.stored()).retry_at
    assert first == T0 + timedelta(seconds=5)
    w.clock.at = first
    with pytest.raises(NetworkError):
        await w.refresh()
    assert (await w.stored()).retry_at == first + timedelta(seconds=10)
    w.clock.at += timedelta(seconds=10)
    conn = await w.refresh()
    assert conn.status == "connected"
    assert conn.retry_at is None
    assert conn.last_error_code is None
    assert secret(conn.access_token) == "at-1"


async def test_a_token_that_still_works_is_used_during_the_back_off() -> None:
    w = await world([NetworkError("down")])
    conn = await w.stored()
    await w.stores.connections.save(
        conn.replace(expires_at=T0 + timedelta(seconds=30)),  # due, not expired
        expected_version=conn.version,
    )
    with pytest.raises(NetworkError):
        await w.refresh()
    still = await w.refresh()  # no second request; the old token is handed out
    assert secret(still.access_token) == "at-0"
    assert len(w.fetcher.requests) == 1


# --------------------------------------------------------------------- dead grants


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (answer(400, {"error": "invalid_grant"}), "invalid_grant"),
        # Slack: a refresh failure inside HTTP 200, with a code of its own
        (
            answer(200, {"ok": False, "error": "invalid_refresh_token"}),
            "invalid_refresh_token",
        ),
        (
            answer(401, {"error": "token_revoked", "error_description": "gone"}),
            "token_revoked",
        ),
        (answer(400, {"error": "unauthorized_client"}), "unauthorized_client"),
    ],
)
async def test_any_other_oauth_error_kills_the_grant(
    failure: Answer, code: str
) -> None:
    w = await world([failure])
    with pytest.raises(AuthorizationRequired, match=code) as caught:
        await w.refresh()
    assert caught.value.hint == "connect it (tether connect) and try again"
    conn = await w.stored()
    assert conn.status == "needs_reauth"
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.last_error is not None
    assert code in conn.last_error
    assert "connection.needs_reauth" in await w.actions()
    # nothing more is sent for a dead grant: callers are told to reconnect
    with pytest.raises(AuthorizationRequired):
        await w.refresh()
    assert len(w.fetcher.requests) == 1


async def test_invalid_client_of_a_dynamic_client_forgets_it() -> None:
    w = await world([answer(401, {"error": "invalid_client"})], source="dynamic")
    with pytest.raises(AuthorizationRequired, match="invalid_client"):
        await w.refresh()
    assert await w.stores.registrations.get("s1", ISSUER) is None  # next connect
    assert (await w.stored()).status == "needs_reauth"


async def test_a_manual_client_is_kept_on_invalid_client() -> None:
    w = await world([answer(401, {"error": "invalid_client"})], source="manual")
    with pytest.raises(AuthorizationRequired):
        await w.refresh()
    assert await w.stores.registrations.get("s1", ISSUER) is not None


async def test_invalid_grant_after_a_peer_rotated_adopts_the_peers_tokens() -> None:
    """Issue 7 item 4: the refused token is no longer the stored one; nothing is wiped."""
    w: World

    async def peer_refreshes() -> None:  # another process won the race meanwhile
        conn = await w.stored()
        await w.stores.connections.save(
            conn.replace(
                access_token=SecretStr("at-peer"),
                refresh_token=SecretStr("rt-peer"),
                expires_at=T0 + timedelta(hours=1),
            ),
            expected_version=conn.version,
        )

    w = await world([answer(400, {"error": "invalid_grant"})], before=peer_refreshes)
    conn = await w.refresh()
    assert secret(conn.access_token) == "at-peer"
    stored = await w.stored()
    assert stored.status == "connected"
    assert secret(stored.refresh_token) == "rt-peer"


# --------------------------------------------------------------------- racing writers


async def test_a_writer_racing_the_refresh_keeps_the_rotated_token() -> None:
    """Issue 7 item 3: a step-up lands between the AS's answer and our write."""
    w: World

    async def step_up_meanwhile() -> None:
        await w.conns.record_step_up(w.server, "shared", ("admin",))

    w = await world([tokens(1)], before=step_up_meanwhile)
    conn = await w.refresh()
    assert secret(conn.refresh_token) == "rt-1"  # the rotated token survived
    assert conn.required_scopes == ("read", "admin")  # and so did the step-up
    assert conn.status == "connected"


async def test_a_reconnect_during_the_refresh_wins() -> None:
    w: World

    async def reconnect() -> None:
        conn = await w.stored()
        await w.stores.connections.save(
            conn.replace(
                access_token=SecretStr("at-new-grant"),
                refresh_token=SecretStr("rt-new-grant"),
                expires_at=T0 + timedelta(hours=1),
            ),
            expected_version=conn.version,
        )

    w = await world([tokens(1)], before=reconnect)
    conn = await w.refresh()
    assert secret(conn.access_token) == "at-new-grant"
    assert secret((await w.stored()).refresh_token) == "rt-new-grant"


async def test_a_caller_cancelled_mid_refresh_does_not_lose_the_tokens() -> None:
    """Issue 7 item 3: the caller's deadline fires after the AS answered."""
    answered = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        answered.set()
        await release.wait()

    w = await world([tokens(1)], before=hold)
    caller = asyncio.create_task(w.refresh())
    await answered.wait()
    caller.cancel()  # the tool call's deadline
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    # the shared flight goes on by itself and stores the rotated pair
    conn = await w.conns.usable(w.server, "shared")
    assert secret(conn.refresh_token) == "rt-1"
    assert len(w.fetcher.requests) == 1


async def test_concurrent_callers_share_one_token_request() -> None:
    gate = asyncio.Event()

    async def wait_for_everybody() -> None:
        await gate.wait()

    w = await world([tokens(1)], before=wait_for_everybody)
    callers = [asyncio.create_task(w.refresh()) for _ in range(200)]
    await asyncio.sleep(0)  # let every caller join the flight
    gate.set()
    results = await asyncio.gather(*callers)
    assert {secret(c.access_token) for c in results} == {"at-1"}
    assert len(w.fetcher.requests) == 1


# --------------------------------------------------------------------- 403


async def test_a_plain_403_changes_nothing_stored() -> None:
    w = await world([])
    before = await w.stored()
    source = HubTokenSource(w.conns, w.server, "shared", clock=w.clock)
    token = AccessToken("at-0", None, ())
    with pytest.raises(PermissionDenied, match="HTTP 403"):
        await source.rejected(token, None, status=403)
    with pytest.raises(PermissionDenied):
        await source.rejected(token, BearerChallenge(error="invalid_token"), status=403)
    assert await w.stored() == before
    assert w.fetcher.requests == []


async def test_insufficient_scope_records_scopes_and_keeps_the_status() -> None:
    w = await world([])
    source = HubTokenSource(w.conns, w.server, "shared", clock=w.clock)
    challenge = BearerChallenge(error="insufficient_scope", scope=("admin",))
    with pytest.raises(StepUpRequired):
        await source.rejected(AccessToken("at-0", None, ()), challenge, status=403)
    conn = await w.stored()
    assert conn.status == "connected"
    assert conn.required_scopes == ("read", "admin")
    assert secret(conn.access_token) == "at-0"
