"""Named credentials: write-only values (design-notes R2.4, R3.21)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tether.errors import NotFound, ValidationFailed
from tether.hub.audit import MASK, Auditor
from tether.hub.credentials import (
    MAX_NAME,
    MAX_VALUE,
    CredentialInfo,
    CredentialService,
)
from tether.hub.servers import ServerService
from tether.store.base import AuditEvent, ServerRecord, Stores
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

T0 = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
SECRET = "ghp_SUPER-secret-value-9876543210"
OTHER_SECRET = "xoxb-another-secret-value-1234"


@dataclass
class FakeClock:
    at: datetime = T0

    def now(self) -> datetime:
        return self.at


async def allow_all(url: str, allow_networks: Sequence[str]) -> None:
    return None


async def no_reauth(server: ServerRecord, reason: str) -> None:
    return None


@dataclass
class Hub:
    stores: Stores
    clock: FakeClock
    credentials: CredentialService
    servers: ServerService

    async def events(self) -> list[AuditEvent]:
        return list(reversed(await self.stores.audit.list(limit=1000)))

    async def dump(self) -> str:
        return json.dumps(
            [dataclasses.asdict(e) for e in await self.events()], default=str
        )


@pytest.fixture
async def hub() -> Hub:
    clock = FakeClock()
    stores, _ = open_memory_stores(KeyRing.generate(), now=clock.now)
    auditor = Auditor(stores.audit, clock)
    return Hub(
        stores,
        clock,
        CredentialService(stores, clock, auditor),
        ServerService(stores, clock, auditor, allow_all, no_reauth),
    )


def _info_text(info: CredentialInfo) -> str:
    return json.dumps(dataclasses.asdict(info), default=str) + repr(info)


# ------------------------------------------------------------------ create


async def test_create_returns_metadata_only(hub: Hub) -> None:
    info = await hub.credentials.create(
        "  github  ", SECRET, description="CI token", actor="alice"
    )
    assert info.name == "github"
    assert info.description == "CI token"
    assert info.created_at == T0
    assert info.updated_at == T0
    assert not hasattr(info, "value")
    assert SECRET not in _info_text(info)


async def test_value_is_kept_for_the_hub(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    record = await hub.credentials.get_record(info.id)
    assert record.value.get_secret_value() == SECRET
    assert SECRET not in repr(record)


async def test_create_audit_has_no_value(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor="alice")
    [event] = await hub.events()
    assert event.action == "credential.create"
    assert event.actor == "alice"
    assert (event.target_type, event.target_id) == ("credential", info.id)
    assert event.after == {"name": "github", "value": MASK}
    assert SECRET not in await hub.dump()


INVALID: list[tuple[str, str, str, str]] = [
    ("blank name", "   ", SECRET, "name"),
    ("empty name", "", SECRET, "name"),
    ("long name", "n" * (MAX_NAME + 1), SECRET, "name"),
    ("empty value", "ok", "", "value"),
    ("long value", "ok", "v" * (MAX_VALUE + 1), "value"),
]


@pytest.mark.parametrize(
    ("name", "value", "field_name"),
    [c[1:] for c in INVALID],
    ids=[c[0] for c in INVALID],
)
async def test_create_refuses(hub: Hub, name: str, value: str, field_name: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.credentials.create(name, value, actor=None)
    exc = info.value
    assert exc.code == "validation"
    assert field_name in exc.details["fields"]
    assert field_name in exc.message
    assert "characters" in exc.details["fields"][field_name]
    assert await hub.credentials.list() == []
    if value:
        assert value not in json.dumps(exc.to_dict()) + str(exc)


@pytest.mark.parametrize(
    ("name", "value"), [("n" * MAX_NAME, "v"), ("x", "v" * MAX_VALUE)]
)
async def test_create_accepts_the_limits(hub: Hub, name: str, value: str) -> None:
    await hub.credentials.create(name, value, actor=None)


@pytest.mark.parametrize("other", ["github", "GitHub", "GITHUB", " github "])
async def test_names_unique_case_insensitively(hub: Hub, other: str) -> None:
    await hub.credentials.create("github", SECRET, actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.credentials.create(other, OTHER_SECRET, actor=None)
    assert info.value.code == "validation"
    assert info.value.details["fields"] == {"name": "is already taken"}
    assert other.strip() in info.value.message
    assert OTHER_SECRET not in str(info.value)


# ------------------------------------------------------------------ read


async def test_list_is_metadata_by_name(hub: Hub) -> None:
    await hub.credentials.create("zeta", SECRET, actor=None)
    await hub.credentials.create("Alpha", OTHER_SECRET, actor=None)
    listed = await hub.credentials.list()
    assert [c.name for c in listed] == ["Alpha", "zeta"]
    assert all(isinstance(c, CredentialInfo) for c in listed)
    text = "".join(_info_text(c) for c in listed)
    assert SECRET not in text
    assert OTHER_SECRET not in text


@pytest.mark.parametrize("ref", ["<id>", "github", "GitHub"])
async def test_get_record_by_id_or_name(hub: Hub, ref: str) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    record = await hub.credentials.get_record(info.id if ref == "<id>" else ref)
    assert record.id == info.id


async def test_get_record_unknown(hub: Hub) -> None:
    with pytest.raises(NotFound) as info:
        await hub.credentials.get_record("missing")
    assert info.value.code == "not_found"
    assert "'missing'" in info.value.message
    assert info.value.hint == "list credentials with `tether credentials list`"


# ------------------------------------------------------------------ update


async def test_rename_keeps_the_value(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    hub.clock.at = T0 + timedelta(minutes=5)
    renamed = await hub.credentials.update(info.id, name="gh", actor="bob")
    assert renamed.name == "gh"
    assert renamed.created_at == T0
    assert renamed.updated_at == T0 + timedelta(minutes=5)
    record = await hub.credentials.get_record("gh")
    assert record.value.get_secret_value() == SECRET
    event = (await hub.events())[-1]
    assert event.action == "credential.update"
    assert event.before == {"name": "github"}
    assert event.after == {"name": "gh", "value": None}


async def test_replace_value(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    updated = await hub.credentials.update("github", value=OTHER_SECRET, actor="bob")
    assert updated.name == "github"
    record = await hub.credentials.get_record(info.id)
    assert record.value.get_secret_value() == OTHER_SECRET
    event = (await hub.events())[-1]
    assert event.after == {"name": "github", "value": MASK}
    text = await hub.dump()
    assert SECRET not in text
    assert OTHER_SECRET not in text
    assert OTHER_SECRET not in _info_text(updated)


async def test_update_description_only(hub: Hub) -> None:
    await hub.credentials.create("github", SECRET, description="a", actor=None)
    updated = await hub.credentials.update("github", description="b", actor=None)
    assert updated.description == "b"
    record = await hub.credentials.get_record("github")
    assert record.value.get_secret_value() == SECRET


async def test_rename_to_a_taken_name_refused(hub: Hub) -> None:
    await hub.credentials.create("github", SECRET, actor=None)
    other = await hub.credentials.create("gitlab", OTHER_SECRET, actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.credentials.update(other.id, name="GITHUB", actor=None)
    assert info.value.details["fields"] == {"name": "is already taken"}
    assert "GITHUB" in info.value.message
    assert (await hub.credentials.get_record(other.id)).name == "gitlab"


async def test_recase_own_name(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    updated = await hub.credentials.update(info.id, name="GitHub", actor=None)
    assert updated.name == "GitHub"


@pytest.mark.parametrize(
    ("name", "value", "field_name"),
    [("n" * (MAX_NAME + 1), None, "name"), (None, "", "value")],
)
async def test_update_validates(
    hub: Hub, name: str | None, value: str | None, field_name: str
) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    with pytest.raises(ValidationFailed) as exc:
        await hub.credentials.update(info.id, name=name, value=value, actor=None)
    assert field_name in exc.value.details["fields"]
    assert field_name in exc.value.message


async def test_update_unknown(hub: Hub) -> None:
    with pytest.raises(NotFound):
        await hub.credentials.update("nope", value="x", actor=None)


# ------------------------------------------------------------------ delete


async def test_delete_unused(hub: Hub) -> None:
    info = await hub.credentials.create("github", SECRET, actor=None)
    await hub.credentials.delete("github", actor="carol")
    assert await hub.credentials.list() == []
    with pytest.raises(NotFound):
        await hub.credentials.get_record(info.id)
    event = (await hub.events())[-1]
    assert event.action == "credential.delete"
    assert event.actor == "carol"
    assert event.before == {"name": "github"}
    assert SECRET not in await hub.dump()


@pytest.mark.parametrize("use", ["header", "client_secret"])
async def test_delete_refused_while_referenced(hub: Hub, use: str) -> None:
    info = await hub.credentials.create("shared-secret", SECRET, actor=None)
    data: dict[str, Any]
    if use == "header":
        data = {"auth_mode": "header", "credential_id": info.id}
    else:
        data = {
            "auth_mode": "oauth",
            "oauth": {
                "registration": "manual",
                "client_id": "c",
                "client_secret_credential_id": info.id,
            },
        }
    await hub.servers.create(
        {"name": "Jira", "url": "https://mcp.example.com/", **data}, actor=None
    )
    await hub.servers.create(
        {"name": "Linear", "url": "https://mcp.example.org/", **data}, actor=None
    )
    with pytest.raises(ValidationFailed) as exc:
        await hub.credentials.delete(info.id, actor=None)
    assert exc.value.code == "validation"
    assert "'shared-secret'" in exc.value.message
    assert "Jira" in exc.value.message
    assert "Linear" in exc.value.message
    assert exc.value.details["fields"] == {"credential": "in use"}
    assert exc.value.hint == "point those servers at another credential first"
    assert (await hub.credentials.get_record(info.id)).name == "shared-secret"


async def test_delete_allowed_once_the_server_moves_away(hub: Hub) -> None:
    info = await hub.credentials.create("tok", SECRET, actor=None)
    server = await hub.servers.create(
        {
            "name": "Jira",
            "url": "https://mcp.example.com/",
            "auth_mode": "header",
            "credential_id": info.id,
        },
        actor=None,
    )
    await hub.servers.update(server.id, {"auth_mode": "none"}, actor=None)
    await hub.credentials.delete(info.id, actor=None)


async def test_delete_unknown(hub: Hub) -> None:
    with pytest.raises(NotFound) as exc:
        await hub.credentials.delete("ghost", actor=None)
    assert "'ghost'" in exc.value.message


async def test_value_never_in_any_audit_event(hub: Hub) -> None:
    info = await hub.credentials.create("a", SECRET, actor="x")
    await hub.credentials.update(info.id, value=OTHER_SECRET, actor="x")
    await hub.credentials.update(info.id, name="b", actor="x")
    await hub.credentials.delete(info.id, actor="x")
    text = await hub.dump()
    assert SECRET not in text
    assert OTHER_SECRET not in text
    assert [e.action for e in await hub.events()] == [
        "credential.create",
        "credential.update",
        "credential.update",
        "credential.delete",
    ]
