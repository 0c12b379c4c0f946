"""The storage contract, written once against the Protocols of ``tether.store.base``.

:class:`StoreContract` is collected through ``test_contract.py`` and runs against every
backend of the ``harness`` fixture (memory, SQLite, PostgreSQL; design-notes D3.5). It only
uses the public Protocol methods, never a backend's internals.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from pydantic import SecretStr

from tether.errors import NotFound, StorageError, ValidationFailed, VersionConflict
from tether.store.base import (
    SHARED,
    AuditEvent,
    ClientRegistration,
    Connection,
    CredentialRecord,
    DiscoveryRecord,
    OAuthSettings,
    PendingAuthorization,
    ServerHealth,
    ServerRecord,
    Stores,
    ToolCacheEntry,
    Toolset,
    ToolsetEntry,
)

from .conftest import Harness

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def server(server_id: str = "s1", name: str = "Linear") -> ServerRecord:
    return ServerRecord(
        id=server_id,
        name=name,
        url=f"https://{server_id}.example/mcp",
        description="issues",
        auth_mode="oauth",
        oauth=OAuthSettings(
            registration="manual",
            client_id="client-1",
            scopes="read write",
            authorization_params={"prompt": "consent", "audience": None},
            per_user=True,
        ),
        allow_networks=("10.0.0.0/8",),
        timeout_seconds=12.5,
    )


def connection(
    server_id: str = "s1", subject: str = SHARED, tag: str = ""
) -> Connection:
    return Connection(
        server_id=server_id,
        subject=subject,
        status="connected",
        access_token=SecretStr(f"access-{server_id}-{subject}{tag}"),
        refresh_token=SecretStr(f"refresh-{server_id}-{subject}{tag}"),
        expires_at=T0 + timedelta(hours=1),
        scopes=("read", "write"),
        issuer="https://as.example",
        client_id="client-1",
    )


def pending(state: str = "state-1", server_id: str = "s1") -> PendingAuthorization:
    return PendingAuthorization(
        state=state,
        server_id=server_id,
        subject=SHARED,
        user_id="admin",
        code_verifier=SecretStr(f"verifier-{state}"),
        issuer="https://as.example",
        resource="https://s1.example/mcp",
        redirect_uri="https://tether.example/oauth/callback",
        client_id="client-1",
        scopes="read",
        created_at=T0,
        server_version=3,
    )


def registration(issuer: str = "https://as.example") -> ClientRegistration:
    return ClientRegistration(
        server_id="s1",
        issuer=issuer,
        client_id="client-1",
        source="dynamic",
        auth_method="client_secret_basic",
        client_secret=SecretStr(f"client-secret-{issuer}"),
        client_secret_expires_at=T0 + timedelta(days=30),
        registration_access_token=SecretStr("rat-1"),
        registration_client_uri="https://as.example/register/client-1",
        metadata={"client_name": "Tether", "grant_types": ["authorization_code"]},
    )


def discovery(server_id: str = "s1") -> DiscoveryRecord:
    return DiscoveryRecord(
        server_id=server_id,
        resource="https://s1.example/mcp",
        resource_metadata_url="https://s1.example/.well-known/oauth-protected-resource",
        authorization_servers=("https://as.example",),
        scopes_supported=("read", "write"),
        issuer="https://as.example",
        as_metadata={
            "issuer": "https://as.example",
            "code_challenge_methods_supported": ["S256"],
        },
        as_metadata_url="https://as.example/.well-known/oauth-authorization-server",
        fetched_at=T0,
    )


async def _with_server(stores: Stores, server_id: str = "s1") -> ServerRecord:
    return await stores.servers.add(server(server_id, name=f"Server {server_id}"))


class StoreContract:
    """Behaviour every backend must share."""

    # ------------------------------------------------------------------ servers

    async def test_server_round_trip(self, harness: Harness) -> None:
        stored = await harness.stores.servers.add(server())
        assert stored.version == 1
        assert stored.created_at == stored.updated_at == harness.clock()
        assert await harness.stores.servers.get("s1") == stored
        assert await harness.stores.servers.get("nope") is None

    async def test_server_name_lookup_is_case_insensitive(
        self, harness: Harness
    ) -> None:
        await harness.stores.servers.add(server())
        found = await harness.stores.servers.get_by_name("LINEAR")
        assert found is not None
        assert found.id == "s1"
        assert await harness.stores.servers.get_by_name("other") is None

    async def test_server_names_and_ids_are_unique(self, harness: Harness) -> None:
        await harness.stores.servers.add(server())
        with pytest.raises(ValidationFailed) as name_clash:
            await harness.stores.servers.add(server("s2", name="linear"))
        assert name_clash.value.details["fields"] == {"name": "already taken"}
        with pytest.raises(ValidationFailed) as id_clash:
            await harness.stores.servers.add(server("s1", name="Other"))
        assert "id" in id_clash.value.details["fields"]

    async def test_servers_listed_by_name(self, harness: Harness) -> None:
        for sid, name in [("a", "zeta"), ("b", "Alpha"), ("c", "mid")]:
            await harness.stores.servers.add(server(sid, name))
        assert [s.name for s in await harness.stores.servers.list()] == [
            "Alpha",
            "mid",
            "zeta",
        ]

    async def test_server_update_is_compare_and_set(self, harness: Harness) -> None:
        stores = harness.stores
        first = await stores.servers.add(server())
        harness.clock.advance(timedelta(minutes=5))
        second = await stores.servers.update(
            first.replace(description="changed", updated_at=None), expected_version=1
        )
        assert second.version == 2
        assert second.created_at == first.created_at
        assert second.updated_at == harness.clock()
        assert await stores.servers.get("s1") == second
        with pytest.raises(VersionConflict):
            await stores.servers.update(first.replace(name="lost"), expected_version=1)
        with pytest.raises(NotFound):
            await stores.servers.update(server("ghost"), expected_version=1)
        stored = await stores.servers.get("s1")
        assert stored is not None
        assert stored.description == "changed"

    async def test_server_rename_to_taken_name_fails(self, harness: Harness) -> None:
        await harness.stores.servers.add(server("s1", "One"))
        two = await harness.stores.servers.add(server("s2", "Two"))
        with pytest.raises(ValidationFailed):
            await harness.stores.servers.update(
                two.replace(name="ONE"), expected_version=1
            )
        renamed = await harness.stores.servers.update(
            two.replace(name="two"), expected_version=1
        )
        assert renamed.name == "two"

    async def test_server_delete_cascades(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        await _with_server(stores, "s2")
        cred = await stores.credentials.add(
            CredentialRecord(id="c1", name="key", value=SecretStr("v"))
        )
        for sid in ("s1", "s2"):
            await stores.discovery.put(discovery(sid))
            await stores.registrations.put(
                ClientRegistration(
                    server_id=sid,
                    issuer="https://as",
                    client_id="c",
                    source="manual",
                    auth_method="none",
                )
            )
            await stores.connections.save(connection(sid), expected_version=0)
            await stores.pending.put(
                pending(f"st-{sid}", sid), ttl=timedelta(minutes=10)
            )
            await stores.tools.put(ToolCacheEntry(sid, SHARED, [{"name": "t"}], T0))
            await stores.tools.put_health(ServerHealth(sid, SHARED, status="ok"))
        await stores.toolsets.add(
            Toolset(
                id="ts", name="Set", entries=(ToolsetEntry("s1"), ToolsetEntry("s2"))
            )
        )
        await stores.audit.append(
            AuditEvent(
                at=T0,
                actor="a",
                action="x",
                target_type="server",
                target_id="s1",
                server_id="s1",
            )
        )

        assert await stores.servers.delete("s1") is True
        assert await stores.servers.delete("s1") is False

        assert await stores.discovery.get("s1") is None
        assert await stores.registrations.get("s1", "https://as") is None
        assert await stores.connections.list("s1") == []
        assert await stores.pending.take("st-s1") is None
        assert await stores.tools.get("s1", SHARED) is None
        assert await stores.tools.get_health("s1", SHARED) is None
        toolset = await stores.toolsets.get("ts")
        assert toolset is not None
        assert toolset.entries == (ToolsetEntry("s2"),)
        # Independent records survive; the other server is untouched.
        assert await stores.credentials.get("c1") == cred
        assert len(await stores.audit.list(server_id="s1")) == 1
        assert await stores.discovery.get("s2") is not None
        assert await stores.connections.get("s2", SHARED) is not None
        assert await stores.pending.take("st-s2") is not None
        assert await stores.tools.get_health("s2", SHARED) is not None

    # ------------------------------------------------------------------ credentials

    async def test_credential_round_trip(self, harness: Harness) -> None:
        stores = harness.stores
        added = await stores.credentials.add(
            CredentialRecord(id="c1", name="Linear key", value=SecretStr("sk-live-123"))
        )
        got = await stores.credentials.get("c1")
        assert got == added
        assert got is not None
        assert got.value.get_secret_value() == "sk-live-123"
        assert await stores.credentials.get("c2") is None
        harness.clock.advance(timedelta(seconds=1))
        updated = await stores.credentials.update(
            CredentialRecord(id="c1", name="renamed", value=SecretStr("sk-live-456"))
        )
        assert updated.created_at == added.created_at
        assert updated.updated_at == harness.clock()
        got = await stores.credentials.get("c1")
        assert got is not None
        assert got.value.get_secret_value() == "sk-live-456"
        assert [c.name for c in await stores.credentials.list()] == ["renamed"]
        assert await stores.credentials.delete("c1") is True
        assert await stores.credentials.delete("c1") is False

    async def test_credential_names_unique_and_update_missing(
        self, harness: Harness
    ) -> None:
        stores = harness.stores
        await stores.credentials.add(
            CredentialRecord(id="c1", name="a", value=SecretStr("1"))
        )
        await stores.credentials.add(
            CredentialRecord(id="c2", name="b", value=SecretStr("2"))
        )
        with pytest.raises(ValidationFailed):
            await stores.credentials.add(
                CredentialRecord(id="c3", name="A", value=SecretStr("3"))
            )
        with pytest.raises(ValidationFailed):
            await stores.credentials.update(
                CredentialRecord(id="c2", name="a", value=SecretStr("2"))
            )
        with pytest.raises(NotFound):
            await stores.credentials.update(
                CredentialRecord(id="c9", name="z", value=SecretStr("9"))
            )

    # ------------------------------------------------------------------ discovery

    async def test_discovery_put_replace_delete(self, harness: Harness) -> None:
        stores = harness.stores
        with pytest.raises(NotFound):
            await stores.discovery.put(discovery())
        await _with_server(stores)
        await stores.discovery.put(discovery())
        assert await stores.discovery.get("s1") == discovery()
        newer = dataclasses.replace(discovery(), issuer="https://as2")
        await stores.discovery.put(newer)
        assert await stores.discovery.get("s1") == newer
        await stores.discovery.delete("s1")
        assert await stores.discovery.get("s1") is None

    # ------------------------------------------------------------------ registrations

    async def test_registrations_keyed_by_issuer(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        first, second = registration("https://as1"), registration("https://as2")
        await stores.registrations.put(first)
        await stores.registrations.put(second)
        got = await stores.registrations.get("s1", "https://as1")
        assert got is not None
        assert got.client_secret is not None
        assert got.client_secret.get_secret_value() == "client-secret-https://as1"
        assert got.registration_access_token is not None
        assert got.registration_access_token.get_secret_value() == "rat-1"
        assert got.metadata == first.metadata
        assert got.created_at == harness.clock()
        assert await stores.registrations.get("s1", "https://other") is None

        replaced = ClientRegistration(
            server_id="s1",
            issuer="https://as1",
            client_id="client-2",
            source="manual",
            auth_method="none",
        )
        await stores.registrations.put(replaced)
        got = await stores.registrations.get("s1", "https://as1")
        assert got is not None
        assert got.client_id == "client-2"
        assert got.client_secret is None
        assert got.registration_access_token is None

        await stores.registrations.delete("s1", "https://as1")
        assert await stores.registrations.get("s1", "https://as1") is None
        assert await stores.registrations.get("s1", "https://as2") is not None
        await stores.registrations.delete("s1")
        assert await stores.registrations.get("s1", "https://as2") is None

    # ------------------------------------------------------------------ connections

    async def test_connection_compare_and_set(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        first = await stores.connections.save(connection(), expected_version=0)
        assert first.version == 1
        assert first.updated_at == harness.clock()
        got = await stores.connections.get("s1", SHARED)
        assert got == first
        assert got is not None
        assert got.access_token is not None
        assert got.access_token.get_secret_value() == "access-s1-shared"

        with pytest.raises(VersionConflict):
            await stores.connections.save(connection(), expected_version=0)
        second = await stores.connections.save(
            first.replace(refresh_token=None, updated_at=None), expected_version=1
        )
        assert second.version == 2
        with pytest.raises(VersionConflict):
            await stores.connections.save(first, expected_version=1)
        with pytest.raises(VersionConflict):
            await stores.connections.save(connection(subject="u1"), expected_version=4)
        got = await stores.connections.get("s1", SHARED)
        assert got is not None
        assert got.refresh_token is None
        assert got.version == 2

    async def test_connection_needs_server(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            await harness.stores.connections.save(
                connection("ghost"), expected_version=0
            )

    async def test_concurrent_connection_writes_one_wins(
        self, harness: Harness
    ) -> None:
        stores = harness.stores
        await _with_server(stores)
        await stores.connections.save(connection(), expected_version=0)
        outcomes: list[str] = []

        async def write(n: int) -> None:
            try:
                await stores.connections.save(
                    connection(tag=str(n)), expected_version=1
                )
                outcomes.append("won")
            except VersionConflict:
                outcomes.append("lost")

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(write, n)
        assert sorted(outcomes) == ["lost"] * 9 + ["won"]

    async def test_concurrent_first_writes_one_wins(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        outcomes: list[str] = []

        async def write(n: int) -> None:
            try:
                await stores.connections.save(
                    connection(tag=str(n)), expected_version=0
                )
                outcomes.append("won")
            except VersionConflict:
                outcomes.append("lost")

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(write, n)
        assert sorted(outcomes) == ["lost"] * 9 + ["won"]

    async def test_connection_list_and_delete(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        await _with_server(stores, "s2")
        for sid, sub in [("s1", "u2"), ("s1", "u1"), ("s2", SHARED)]:
            await stores.connections.save(connection(sid, sub), expected_version=0)
        assert [(c.server_id, c.subject) for c in await stores.connections.list()] == [
            ("s1", "u1"),
            ("s1", "u2"),
            ("s2", SHARED),
        ]
        assert len(await stores.connections.list("s1")) == 2
        await stores.connections.delete("s1", "u1")
        assert [c.subject for c in await stores.connections.list("s1")] == ["u2"]
        await stores.connections.delete("s1")
        assert await stores.connections.list("s1") == []
        assert len(await stores.connections.list()) == 1

    # ------------------------------------------------------------------ pending

    async def test_pending_is_taken_once(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        await stores.pending.put(pending(), ttl=timedelta(minutes=10))
        taken = await stores.pending.take("state-1")
        assert taken == pending()
        assert taken is not None
        assert taken.code_verifier.get_secret_value() == "verifier-state-1"
        assert await stores.pending.take("state-1") is None
        assert await stores.pending.take("never") is None

    async def test_pending_expires(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        await stores.pending.put(pending("a"), ttl=timedelta(minutes=10))
        await stores.pending.put(pending("b"), ttl=timedelta(minutes=10))
        harness.clock.advance(timedelta(minutes=9, seconds=59))
        assert await stores.pending.take("a") is not None
        harness.clock.advance(timedelta(seconds=1))
        assert await stores.pending.take("b") is None

    async def test_pending_concurrent_take_has_one_winner(
        self, harness: Harness
    ) -> None:
        stores = harness.stores
        await _with_server(stores)
        await stores.pending.put(pending(), ttl=timedelta(minutes=10))
        winners: list[PendingAuthorization] = []

        async def take() -> None:
            got = await stores.pending.take("state-1")
            if got is not None:
                winners.append(got)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(take)
        assert winners == [pending()]

    async def test_pending_needs_server(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            await harness.stores.pending.put(pending(server_id="x"), ttl=timedelta(1))

    # ------------------------------------------------------------------ audit

    async def test_audit_newest_first(self, harness: Harness) -> None:
        log = harness.stores.audit
        for n in range(5):
            await log.append(
                AuditEvent(
                    at=T0 + timedelta(seconds=n),
                    actor="admin",
                    action=f"a{n}",
                    target_type="server",
                    target_id="s1",
                    server_id="s1" if n % 2 == 0 else "s2",
                    before={"name": "x"},
                    after={"value": "••••"},
                    detail="d",
                )
            )
        events = await log.list()
        assert [e.action for e in events] == ["a4", "a3", "a2", "a1", "a0"]
        assert len({e.id for e in events}) == 5
        assert events[0].after == {"value": "••••"}
        assert events[0].at == T0 + timedelta(seconds=4)
        assert [e.action for e in await log.list(server_id="s1", limit=2)] == [
            "a4",
            "a2",
        ]

    # ------------------------------------------------------------------ tool cache

    async def test_tool_cache_and_health(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        tools = [{"name": "search", "inputSchema": {"type": "object"}}]
        entry = ToolCacheEntry("s1", SHARED, tools, T0, protocol_version="2025-06-18")
        await stores.tools.put(entry)
        await stores.tools.put(ToolCacheEntry("s1", "u1", [], T0))
        got = await stores.tools.get("s1", SHARED)
        assert got is not None
        assert list(got.tools) == tools
        assert got.fetched_at == T0
        assert got.protocol_version == "2025-06-18"
        await stores.tools.put(
            ToolCacheEntry("s1", SHARED, [], T0 + timedelta(hours=1))
        )
        got = await stores.tools.get("s1", SHARED)
        assert got is not None
        assert list(got.tools) == []
        await stores.tools.delete("s1", SHARED)
        assert await stores.tools.get("s1", SHARED) is None
        assert await stores.tools.get("s1", "u1") is not None
        await stores.tools.delete("s1")
        assert await stores.tools.get("s1", "u1") is None

        health = ServerHealth(
            "s1",
            SHARED,
            status="error",
            last_error="boom",
            checked_at=T0,
            capabilities={"tools": {"listChanged": True}},
        )
        await stores.tools.put_health(health)
        assert await stores.tools.get_health("s1", SHARED) == health
        await stores.tools.put_health(ServerHealth("s1", SHARED, status="ok"))
        got_health = await stores.tools.get_health("s1", SHARED)
        assert got_health is not None
        assert got_health.status == "ok"
        with pytest.raises(NotFound):
            await stores.tools.put(ToolCacheEntry("ghost", SHARED, [], T0))

    async def test_tool_cache_put_many(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        await _with_server(stores, "s2")
        await stores.tools.put(ToolCacheEntry("s1", SHARED, [], T0))
        later = T0 + timedelta(minutes=5)
        await stores.tools.put_many(
            [
                ToolCacheEntry("s1", SHARED, [{"name": "old"}], T0),
                ToolCacheEntry("s2", "u1", [{"name": "b"}], later, "2026-07-28"),
                ToolCacheEntry("s1", SHARED, [{"name": "a"}], later),  # later wins
            ],
            [
                ServerHealth("s1", SHARED, status="ok", checked_at=later),
                ServerHealth("s2", "u1", status="error", last_error="x"),
            ],
        )
        one = await stores.tools.get("s1", SHARED)
        two = await stores.tools.get("s2", "u1")
        assert one is not None
        assert list(one.tools) == [{"name": "a"}]
        assert one.fetched_at == later
        assert two is not None
        assert two.protocol_version == "2026-07-28"
        health = await stores.tools.get_health("s1", SHARED)
        assert health == ServerHealth("s1", SHARED, status="ok", checked_at=later)
        failed = await stores.tools.get_health("s2", "u1")
        assert failed is not None
        assert failed.last_error == "x"
        await stores.tools.put_many([], [])  # nothing to write is no error
        await stores.tools.put_many([], [ServerHealth("s2", SHARED, status="ok")])
        assert await stores.tools.get("s2", SHARED) is None

    async def test_bulk_reads(self, harness: Harness) -> None:
        stores = harness.stores
        one, two = await _with_server(stores, "s1"), await _with_server(stores, "s2")
        assert await stores.servers.get_many([]) == {}
        assert await stores.servers.get_many(["s2", "ghost", "s1", "s2"]) == {
            "s1": one,
            "s2": two,
        }
        await stores.tools.put(ToolCacheEntry("s1", SHARED, [{"name": "a"}], T0))
        await stores.tools.put(ToolCacheEntry("s1", "u2", [], T0))
        await stores.tools.put(ToolCacheEntry("s2", "u2", [{"name": "b"}], T0))
        found = await stores.tools.get_many(
            [("s1", SHARED), ("s2", "u2"), ("s2", SHARED), ("ghost", SHARED)]
        )
        # ("s1", "u2") was not asked for, though its server and subject both were
        assert sorted(found) == [("s1", SHARED), ("s2", "u2")]
        assert found["s1", SHARED] == await stores.tools.get("s1", SHARED)
        assert list(found["s2", "u2"].tools) == [{"name": "b"}]
        assert await stores.tools.get_many([]) == {}

    async def test_tool_cache_put_many_is_all_or_nothing(
        self, harness: Harness
    ) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        with pytest.raises(NotFound):
            await stores.tools.put_many(
                [ToolCacheEntry("s1", SHARED, [{"name": "a"}], T0)],
                [ServerHealth("ghost", SHARED, status="ok")],
            )
        assert await stores.tools.get("s1", SHARED) is None
        with pytest.raises(NotFound):
            await stores.tools.put_many(
                [ToolCacheEntry("ghost", SHARED, [], T0)],
                [ServerHealth("s1", SHARED, status="ok")],
            )
        assert await stores.tools.get_health("s1", SHARED) is None

    # ------------------------------------------------------------------ toolsets

    async def test_toolset_round_trip(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        await _with_server(stores, "s2")
        toolset = Toolset(
            id="t1",
            name="Support",
            description="d",
            entries=(ToolsetEntry("s2", ("search", "create")), ToolsetEntry("s1")),
        )
        added = await stores.toolsets.add(toolset)
        assert added.version == 1
        assert await stores.toolsets.get("t1") == added
        assert await stores.toolsets.get_by_name("support") == added
        assert await stores.toolsets.get("t2") is None
        updated = await stores.toolsets.update(
            Toolset(id="t1", name="Support", entries=(ToolsetEntry("s1", ()),)),
            expected_version=1,
        )
        assert updated.version == 2
        assert updated.created_at == added.created_at
        assert await stores.toolsets.get("t1") == updated
        with pytest.raises(VersionConflict):
            await stores.toolsets.update(toolset, expected_version=1)
        with pytest.raises(NotFound):
            await stores.toolsets.update(
                Toolset(id="zz", name="zz"), expected_version=1
            )
        assert await stores.toolsets.delete("t1") is True
        assert await stores.toolsets.delete("t1") is False
        assert await stores.toolsets.list() == []

    async def test_toolset_validation(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        await stores.toolsets.add(Toolset(id="t1", name="One"))
        await stores.toolsets.add(Toolset(id="t2", name="Two"))
        assert [t.name for t in await stores.toolsets.list()] == ["One", "Two"]
        with pytest.raises(ValidationFailed):
            await stores.toolsets.add(Toolset(id="t3", name="one"))
        with pytest.raises(ValidationFailed):
            await stores.toolsets.add(
                Toolset(id="t3", name="dup", entries=(ToolsetEntry("s1"),) * 2)
            )
        with pytest.raises(NotFound):
            await stores.toolsets.add(
                Toolset(id="t3", name="ghost", entries=(ToolsetEntry("ghost"),))
            )
        assert await stores.toolsets.get("t3") is None

    # ------------------------------------------------------------------ isolation

    async def test_returned_records_are_copies(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores)
        record = discovery()
        await stores.discovery.put(record)
        record.as_metadata["issuer"] = "mutated"  # type: ignore[index]
        got = await stores.discovery.get("s1")
        assert got is not None
        assert got.as_metadata["issuer"] == "https://as.example"

    # ------------------------------------------------------------------ locks

    async def test_lock_excludes_and_times_out(self, harness: Harness) -> None:
        locks = harness.stores.locks
        order: list[str] = []
        holding = anyio.Event()

        async def holder() -> None:
            async with locks.lock("refresh:s1:shared"):
                order.append("first in")
                holding.set()
                await anyio.sleep(0.2)
                order.append("first out")

        async def waiter() -> None:
            await holding.wait()
            async with locks.lock("refresh:s1:shared", timeout=30):
                order.append("second in")

        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            tg.start_soon(waiter)
        assert order == ["first in", "first out", "second in"]

        failures: list[StorageError] = []

        async def impatient() -> None:
            try:
                async with locks.lock("k", timeout=0.05):
                    pass  # pragma: no cover
            except StorageError as exc:
                failures.append(exc)

        async with locks.lock("k"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(impatient)
            async with locks.lock("other-key", timeout=30):  # free: success path
                pass
        assert len(failures) == 1
        async with locks.lock("k", timeout=30):  # released: a success path
            pass

    async def test_lease_excludes_other_holders_until_released_or_expired(
        self, harness: Harness
    ) -> None:
        leases = harness.stores.leases
        assert leases is not None
        ttl = timedelta(seconds=30)
        assert await leases.acquire("refresh:s1:shared", "a", ttl=ttl)
        assert not await leases.acquire("refresh:s1:shared", "b", ttl=ttl)
        assert await leases.acquire("refresh:s1:shared", "a", ttl=ttl)  # extend
        assert await leases.acquire("refresh:s2:shared", "b", ttl=ttl)  # other key
        await leases.release("refresh:s1:shared", "b")  # not b's: a keeps it
        assert not await leases.acquire("refresh:s1:shared", "b", ttl=ttl)
        await leases.release("refresh:s1:shared", "a")
        assert await leases.acquire("refresh:s1:shared", "b", ttl=ttl)
        # a holder that stops extending loses the lease when it expires
        harness.clock.advance(timedelta(seconds=29))
        assert not await leases.acquire("refresh:s1:shared", "c", ttl=ttl)
        harness.clock.advance(timedelta(seconds=1))
        assert await leases.acquire("refresh:s1:shared", "c", ttl=ttl)
        assert not await leases.acquire("refresh:s1:shared", "b", ttl=ttl)

    async def test_lease_holder_is_whoever_holds_it_unexpired(
        self, harness: Harness
    ) -> None:
        leases = harness.stores.leases
        assert leases is not None
        ttl = timedelta(seconds=30)
        assert await leases.holder("job:refresh") is None
        assert await leases.acquire("job:refresh", "worker-a", ttl=ttl)
        assert await leases.holder("job:refresh") == "worker-a"
        assert await leases.holder("job:tools") is None
        harness.clock.advance(ttl)  # expired: nobody holds it, though the row is there
        assert await leases.holder("job:refresh") is None
        assert await leases.acquire("job:refresh", "worker-b", ttl=ttl)
        assert await leases.holder("job:refresh") == "worker-b"
        await leases.release("job:refresh", "worker-b")
        assert await leases.holder("job:refresh") is None

    # ------------------------------------------------------------------ pagination

    async def test_servers_paginated_by_name(self, harness: Harness) -> None:
        """Keyset pages: stable order, every record once, inserts shift nothing."""
        servers = harness.stores.servers
        names = ["delta", "Alpha", "charlie", "Bravo", "echo"]
        for n, name in enumerate(names):
            await servers.add(server(f"s{n}", name))
        first = await servers.list_page(limit=2)
        assert [s.name for s in first.items] == ["Alpha", "Bravo"]
        assert first.next is not None
        # a server added before the cursor is not seen, and shifts no later page
        await servers.add(server("s9", "aardvark"))
        second = await servers.list_page(limit=2, after=first.next)
        assert [s.name for s in second.items] == ["charlie", "delta"]
        assert second.next is not None
        last = await servers.list_page(limit=2, after=second.next)
        assert [s.name for s in last.items] == ["echo"]
        assert last.next is None
        whole = await servers.list_page(limit=6)
        assert [s.id for s in whole.items] == [s.id for s in await servers.list()]
        assert whole.next is None
        assert (await servers.list_page(limit=1000)).items == whole.items

    async def test_connections_paginated_by_server_and_subject(
        self, harness: Harness
    ) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        await _with_server(stores, "s2")
        keys = [("s2", SHARED), ("s1", "u2"), ("s1", "u1"), ("s1", "u3")]
        for sid, sub in keys:
            await stores.connections.save(connection(sid, sub), expected_version=0)
        seen: list[tuple[str, str]] = []
        after: str | None = None
        while True:
            page = await stores.connections.list_page(limit=3, after=after)
            seen += [(c.server_id, c.subject) for c in page.items]
            if page.next is None:
                break
            after = page.next
        assert seen == sorted(keys)
        token = page.items[0].access_token
        assert token is not None
        assert token.get_secret_value() == "access-s2-shared"  # opened
        only = await stores.connections.list_page("s1", limit=2)
        assert [c.subject for c in only.items] == ["u1", "u2"]
        rest = await stores.connections.list_page("s1", limit=2, after=only.next)
        assert [c.subject for c in rest.items] == ["u3"]
        assert rest.next is None

    async def test_audit_paginated_newest_first(self, harness: Harness) -> None:
        log = harness.stores.audit
        for n in range(7):
            await log.append(
                AuditEvent(
                    at=T0 + timedelta(seconds=n),
                    actor="admin",
                    action=f"a{n}",
                    target_type="server",
                    target_id="s1",
                    server_id="s1" if n % 2 == 0 else "s2",
                )
            )
        first = await log.list_page(limit=3)
        assert [e.action for e in first.items] == ["a6", "a5", "a4"]
        # an event appended meanwhile goes before the first page, not into the next
        await log.append(
            AuditEvent(
                at=T0, actor=None, action="late", target_type="server", target_id=None
            )
        )
        second = await log.list_page(limit=3, after=first.next)
        assert [e.action for e in second.items] == ["a3", "a2", "a1"]
        last = await log.list_page(limit=3, after=second.next)
        assert [e.action for e in last.items] == ["a0"]
        assert last.next is None
        s1 = await log.list_page(server_id="s1", limit=3)
        assert [e.action for e in s1.items] == ["a6", "a4", "a2"]
        s1_rest = await log.list_page(server_id="s1", limit=3, after=s1.next)
        assert [e.action for e in s1_rest.items] == ["a0"]

    async def test_bad_cursor_and_limit_refused(self, harness: Harness) -> None:
        stores = harness.stores
        await _with_server(stores, "s1")
        # garbage, JSON null, an audit cursor ([1]) for the servers listing
        for bad in ["not-a-cursor!", "bnVsbA", "WzFd"]:
            with pytest.raises(ValidationFailed) as refused:
                await stores.servers.list_page(after=bad)
            assert refused.value.details["fields"] == {"after": "invalid cursor"}
        with pytest.raises(ValidationFailed):
            await stores.connections.list_page(after='["s1"]')
        with pytest.raises(ValidationFailed):
            await stores.audit.list_page(after="WyJ4Il0")  # ["x"]: not an id
        for limit in (0, 1001):
            with pytest.raises(ValidationFailed):
                await stores.servers.list_page(limit=limit)
