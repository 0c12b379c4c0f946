"""Server registry use cases (design-notes R2.1, R3.3; ``hub/servers.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tether.errors import BlockedDestination, NotFound, ValidationFailed
from tether.hub.audit import MASK, Auditor
from tether.hub.credentials import CredentialService
from tether.hub.servers import (
    PROTECTED_PARAMS,
    REAUTH_TRIGGERS,
    ServerService,
    ServerSpec,
    changed_triggers,
    parse_spec,
)
from tether.store.base import AuditEvent, ServerRecord, Stores, ToolCacheEntry
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = "sk-live-DO-NOT-LEAK-0123456789"
HINT = "correct the named fields and save again"


@dataclass
class FakeClock:
    at: datetime = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class FakeUrlCheck:
    """Refuses hosts containing ``blocked``; records every call."""

    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def __call__(self, url: str, allow_networks: Sequence[str]) -> None:
        self.calls.append((url, tuple(allow_networks)))
        if "blocked" in url:
            raise BlockedDestination(f"'{url}' resolves to a private address")


@dataclass
class Reauths:
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, server: ServerRecord, reason: str) -> None:
        self.calls.append((server.id, reason))


@dataclass
class Hub:
    stores: Stores
    clock: FakeClock
    url_check: FakeUrlCheck
    reauths: Reauths
    servers: ServerService
    credentials: CredentialService

    async def events(self) -> list[AuditEvent]:
        return list(reversed(await self.stores.audit.list(limit=1000)))


@pytest.fixture
async def hub() -> Hub:
    clock = FakeClock()
    stores, _ = open_memory_stores(KeyRing.generate(), now=clock.now)
    auditor = Auditor(stores.audit, clock)
    url_check = FakeUrlCheck()
    reauths = Reauths()
    return Hub(
        stores,
        clock,
        url_check,
        reauths,
        ServerService(stores, clock, auditor, url_check, reauths),
        CredentialService(stores, clock, auditor),
    )


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "Jira", "url": "https://mcp.example.com/mcp"}
    data.update(changes)
    return data


def assert_invalid(
    exc: ValidationFailed, field_name: str, *words: str, hint: str | None = HINT
) -> None:
    assert exc.code == "validation"
    fields = exc.details["fields"]
    assert field_name in fields, fields
    assert field_name.lower() in exc.message.lower()
    for word in words:
        assert word in fields[field_name] or word in exc.message, (word, exc.message)
    if hint is not None:
        assert exc.hint == hint


# ------------------------------------------------------------------ parse_spec


def test_parse_spec_defaults() -> None:
    spec = parse_spec(base())
    assert spec.name == "Jira"
    assert spec.description == ""
    assert spec.enabled is True
    assert spec.timeout_seconds == 30
    assert spec.auth_mode == "none"
    assert spec.oauth.registration == "auto"
    assert spec.oauth.authorization_params == {}
    assert spec.header_name is None
    assert spec.credential_id is None


def test_parse_spec_strips_name_and_url() -> None:
    spec = parse_spec(base(name="  Jira  ", url="  https://mcp.example.com/mcp "))
    assert spec.name == "Jira"
    assert spec.url == "https://mcp.example.com/mcp"


INVALID: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("name missing", {"name": None}, "name", ()),
    ("name blank", {"name": "   "}, "name", ("blank",)),
    ("name empty", {"name": ""}, "name", ("at least 1",)),
    ("name too long", {"name": "n" * 101}, "name", ("at most 100",)),
    ("url blank", {"url": " "}, "url", ("blank",)),
    ("url too long", {"url": "https://a.example/" + "p" * 983}, "url", ("1000",)),
    ("description too long", {"description": "d" * 1001}, "description", ("1000",)),
    ("timeout zero", {"timeout_seconds": 0}, "timeout_seconds", ("1",)),
    ("timeout too big", {"timeout_seconds": 301}, "timeout_seconds", ("300",)),
    ("timeout negative", {"timeout_seconds": -5}, "timeout_seconds", ()),
    ("timeout fraction", {"timeout_seconds": 1.5}, "timeout_seconds", ("integer",)),
    ("timeout text", {"timeout_seconds": "soon"}, "timeout_seconds", ("integer",)),
    ("auth mode unknown", {"auth_mode": "basic"}, "auth_mode", ("oauth",)),
    (
        "registration unknown",
        {"auth_mode": "oauth", "oauth": {"registration": "magic"}},
        "oauth.registration",
        ("manual",),
    ),
    (
        "token auth method unknown",
        {"auth_mode": "oauth", "oauth": {"token_auth_method": "tls_client_auth"}},
        "oauth.token_auth_method",
        (),
    ),
    ("header name too long", {"header_name": "h" * 101}, "header_name", ("100",)),
    ("header scheme too long", {"header_scheme": "s" * 101}, "header_scheme", ()),
    ("client id too long", {"oauth": {"client_id": "c" * 1001}}, "oauth.client_id", ()),
    ("scopes too long", {"oauth": {"scopes": "s" * 2001}}, "oauth.scopes", ("2000",)),
    ("unknown field", {"colour": "red"}, "colour", ("not permitted",)),
    ("unknown oauth field", {"oauth": {"pkce": False}}, "oauth.pkce", ()),
    (
        "authorization params array",
        {"oauth": {"authorization_params": ["prompt", "consent"]}},
        "oauth.authorization_params",
        ("JSON object",),
    ),
    (
        "authorization params scalar",
        {"oauth": {"authorization_params": "prompt=consent"}},
        "oauth.authorization_params",
        ("JSON object",),
    ),
    (
        "token params array",
        {"oauth": {"token_params": [1, 2]}},
        "oauth.token_params",
        ("JSON object",),
    ),
    (
        "params nested object",
        {"oauth": {"authorization_params": {"claims": {"id_token": {}}}}},
        "oauth.authorization_params",
        ("claims", "string or null"),
    ),
    (
        "params list value",
        {"oauth": {"token_params": {"audience": ["a", "b"]}}},
        "oauth.token_params",
        ("audience", "string or null"),
    ),
]


@pytest.mark.parametrize(
    ("changes", "field_name", "words"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_parse_spec_refuses(
    changes: dict[str, Any], field_name: str, words: tuple[str, ...]
) -> None:
    data = base(**changes)
    if changes.get("name", "") is None:
        del data["name"]
    with pytest.raises(ValidationFailed) as info:
        parse_spec(data)
    assert_invalid(info.value, field_name, *words)


BOUNDARIES: list[tuple[str, dict[str, Any]]] = [
    ("name 100", {"name": "n" * 100}),
    ("url 1000", {"url": "https://a.example/" + "p" * 982}),
    ("description 1000", {"description": "d" * 1000}),
    ("timeout 1", {"timeout_seconds": 1}),
    ("timeout 300", {"timeout_seconds": 300}),
    ("timeout whole float", {"timeout_seconds": 60.0}),
    ("scopes 2000", {"oauth": {"scopes": "s" * 2000}}),
    ("params null value", {"oauth": {"authorization_params": {"prompt": None}}}),
    ("params none object", {"oauth": {"authorization_params": None}}),
]


@pytest.mark.parametrize(
    "changes", [c for _, c in BOUNDARIES], ids=[i for i, _ in BOUNDARIES]
)
def test_parse_spec_accepts_boundaries(changes: dict[str, Any]) -> None:
    parse_spec(base(**changes))


@pytest.mark.parametrize("name", sorted(PROTECTED_PARAMS))
@pytest.mark.parametrize("which", ["authorization_params", "token_params"])
def test_protected_params_refused_with_a_clear_message(name: str, which: str) -> None:
    for value in ("x", None):  # neither set nor removed
        with pytest.raises(ValidationFailed) as info:
            parse_spec(base(auth_mode="oauth", oauth={which: {name: value}}))
        assert_invalid(info.value, f"oauth.{which}", name, "Tether controls")


def test_protected_params_are_the_security_critical_ones() -> None:
    assert {
        "state",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "client_id",
        "code_verifier",
        "client_secret",
    } <= PROTECTED_PARAMS


def test_params_values_become_strings() -> None:
    spec = parse_spec(
        base(
            oauth={
                "authorization_params": {"prompt": "consent", "max_age": 0},
                "token_params": {"audience": None, "force": True, "off": False},
            }
        )
    )
    assert spec.oauth.authorization_params == {"prompt": "consent", "max_age": "0"}
    # JSON spelling of booleans, not Python's "True"
    assert spec.oauth.token_params == {
        "audience": None,
        "force": "true",
        "off": "false",
    }


def test_blank_oauth_strings_become_none() -> None:
    spec = parse_spec(
        base(oauth={"client_id": "  ", "scopes": "", "authorization_server": " "})
    )
    assert spec.oauth.client_id is None
    assert spec.oauth.scopes is None
    assert spec.oauth.authorization_server is None


HEADER_DEFAULTS: list[tuple[dict[str, Any], str, str]] = [
    ({}, "Authorization", "Bearer"),
    ({"header_name": ""}, "Authorization", "Bearer"),
    ({"header_name": "X-API-Key", "header_scheme": ""}, "X-API-Key", ""),
    ({"header_scheme": "Token"}, "Authorization", "Token"),
]


@pytest.mark.parametrize(("changes", "header", "scheme"), HEADER_DEFAULTS)
def test_header_defaults(changes: dict[str, Any], header: str, scheme: str) -> None:
    spec = parse_spec(base(auth_mode="header", credential_id="c1", **changes))
    assert spec.header_name == header
    assert spec.header_scheme == scheme


@pytest.mark.parametrize("mode", ["none", "oauth"])
def test_header_fields_cleared_outside_header_mode(mode: str) -> None:
    spec = parse_spec(
        base(
            auth_mode=mode,
            header_name="X-Key",
            header_scheme="Token",
            credential_id="c1",
        )
    )
    assert (spec.header_name, spec.header_scheme, spec.credential_id) == (
        None,
        None,
        None,
    )


def test_from_record_round_trips() -> None:
    spec = parse_spec(
        base(
            description="d",
            timeout_seconds=45,
            auth_mode="oauth",
            oauth={
                "registration": "manual",
                "client_id": "abc",
                "scopes": "read write",
                "authorization_params": {"prompt": "consent"},
                "token_params": {"audience": None},
                "per_user": True,
            },
            allow_networks=["10.0.0.0/8"],
        )
    )
    record = ServerRecord(id="x", name=spec.name, url=spec.url)
    from tether.hub.servers import _record_from_spec

    assert ServerSpec.from_record(_record_from_spec(spec, record)) == spec


# ------------------------------------------------------------------ create


async def test_create_stores_and_audits(hub: Hub) -> None:
    server = await hub.servers.create(base(description="tickets"), actor="alice")
    assert server.name == "Jira"
    assert server.version == 1
    assert server.created_at == T0
    assert server.updated_at == T0
    assert await hub.servers.get(server.id) == server
    assert hub.url_check.calls == [("https://mcp.example.com/mcp", ())]
    [event] = await hub.events()
    assert event.action == "server.create"
    assert event.actor == "alice"
    assert (event.target_type, event.target_id, event.server_id) == (
        "server",
        server.id,
        server.id,
    )
    assert event.before is None
    assert event.after is not None
    assert event.after["name"] == "Jira"
    assert event.after["description"] == "tickets"
    assert event.at == T0


async def test_create_passes_the_server_allowlist_to_the_url_check(hub: Hub) -> None:
    await hub.servers.create(
        base(url="https://10.1.2.3/mcp", allow_networks=["10.0.0.0/8"]), actor=None
    )
    assert hub.url_check.calls == [("https://10.1.2.3/mcp", ("10.0.0.0/8",))]


async def test_create_refuses_a_blocked_url_as_a_field_error(hub: Hub) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(base(url="https://blocked.example/mcp"), actor=None)
    exc = info.value
    assert_invalid(exc, "url", "private address", hint=None)
    assert "allow_networks" in (exc.hint or "")
    assert isinstance(exc.__cause__, BlockedDestination)
    assert await hub.servers.list() == []
    assert await hub.events() == []


async def test_url_check_failures_other_than_tether_errors_become_field_errors(
    hub: Hub,
) -> None:
    async def broken(url: str, allow: Sequence[str]) -> None:
        raise OSError("resolver exploded")

    hub.servers._url_check = broken
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(base(), actor=None)
    assert_invalid(info.value, "url", "resolver exploded", hint=None)


@pytest.mark.parametrize("other", ["Jira", "jira", "JIRA", "  jIrA "])
async def test_name_unique_case_insensitively(hub: Hub, other: str) -> None:
    await hub.servers.create(base(), actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(
            base(name=other, url="https://other.example/mcp"), actor=None
        )
    assert_invalid(info.value, "name", "already", hint="choose another name")
    assert "Jira" in info.value.message or other.strip() in info.value.message
    assert len(await hub.servers.list()) == 1


async def test_header_mode_needs_a_credential(hub: Hub) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(base(auth_mode="header"), actor=None)
    assert_invalid(info.value, "credential_id", "needs a credential")


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"auth_mode": "header", "credential_id": "nope"}, "credential_id"),
        (
            {
                "auth_mode": "oauth",
                "oauth": {
                    "registration": "manual",
                    "client_id": "abc",
                    "client_secret_credential_id": "nope",
                },
            },
            "oauth.client_secret_credential_id",
        ),
    ],
)
async def test_credential_refs_must_exist(
    hub: Hub, changes: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(base(**changes), actor=None)
    assert_invalid(info.value, field_name, "'nope'", "does not exist")
    assert hub.url_check.calls == []  # refs are checked before the network policy


async def test_credential_refs_that_exist_are_accepted(hub: Hub) -> None:
    cred = await hub.credentials.create("jira-token", SECRET, actor=None)
    server = await hub.servers.create(
        base(auth_mode="header", credential_id=cred.id), actor=None
    )
    assert server.credential_id == cred.id
    assert (server.header_name, server.header_scheme) == ("Authorization", "Bearer")


@pytest.mark.parametrize("client_id", [None, "", "   "])
async def test_manual_registration_needs_a_client_id(
    hub: Hub, client_id: str | None
) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(
            base(
                auth_mode="oauth",
                oauth={"registration": "manual", "client_id": client_id},
            ),
            actor=None,
        )
    assert_invalid(info.value, "oauth.client_id", "client id")


async def test_manual_registration_checked_only_in_oauth_mode(hub: Hub) -> None:
    server = await hub.servers.create(
        base(oauth={"registration": "manual"}), actor=None
    )
    assert server.oauth.registration == "manual"


async def test_several_field_errors_reported_together(hub: Hub) -> None:
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.create(
            base(
                auth_mode="oauth",
                oauth={
                    "registration": "manual",
                    "client_secret_credential_id": "nope",
                },
            ),
            actor=None,
        )
    assert set(info.value.details["fields"]) == {
        "oauth.client_id",
        "oauth.client_secret_credential_id",
    }


# ------------------------------------------------------------------ get / list


async def test_get_by_id_and_name(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    assert (await hub.servers.get(server.id)).id == server.id
    assert (await hub.servers.get("Jira")).id == server.id
    assert (await hub.servers.get("jira")).id == server.id


async def test_get_unknown(hub: Hub) -> None:
    with pytest.raises(NotFound) as info:
        await hub.servers.get("Confluence")
    assert info.value.code == "not_found"
    assert "'Confluence'" in info.value.message
    assert info.value.hint == "list servers with `tether servers list`"


async def test_list_by_name(hub: Hub) -> None:
    for name in ("zeta", "Alpha", "beta"):
        await hub.servers.create(base(name=name), actor=None)
    assert [s.name for s in await hub.servers.list()] == ["Alpha", "beta", "zeta"]


# ------------------------------------------------------------------ update


async def oauth_server(hub: Hub, **oauth: Any) -> ServerRecord:
    settings: dict[str, Any] = {
        "registration": "manual",
        "client_id": "client-1",
        "scopes": "read",
        "authorization_params": {"prompt": "consent"},
        "token_params": {"audience": "api"},
    }
    settings.update(oauth)
    return await hub.servers.create(base(auth_mode="oauth", oauth=settings), actor=None)


async def test_update_merges_oauth_key_by_key(hub: Hub) -> None:
    server = await oauth_server(hub)
    updated = await hub.servers.update(
        server.id, {"oauth": {"scopes": "read write"}}, actor="bob"
    )
    assert updated.oauth.scopes == "read write"
    assert updated.oauth.registration == "manual"
    assert updated.oauth.client_id == "client-1"
    assert updated.oauth.authorization_params == {"prompt": "consent"}
    assert updated.oauth.token_params == {"audience": "api"}
    assert updated.version == server.version + 1


async def test_update_replaces_a_params_object_whole(hub: Hub) -> None:
    server = await oauth_server(hub)
    updated = await hub.servers.update(
        server.id, {"oauth": {"authorization_params": {"login_hint": "x"}}}, actor=None
    )
    assert updated.oauth.authorization_params == {"login_hint": "x"}


async def test_update_keeps_unmentioned_top_level_fields(hub: Hub) -> None:
    server = await hub.servers.create(
        base(description="d", timeout_seconds=99), actor=None
    )
    updated = await hub.servers.update(server.id, {"enabled": False}, actor=None)
    assert updated.enabled is False
    assert (updated.description, updated.timeout_seconds) == ("d", 99)
    assert updated.created_at == T0


async def test_update_sets_updated_at_from_the_clock(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    hub.clock.advance(60)
    updated = await hub.servers.update(server.id, {"description": "x"}, actor=None)
    assert updated.updated_at == T0 + timedelta(seconds=60)
    assert updated.created_at == T0


async def test_update_by_name(hub: Hub) -> None:
    await hub.servers.create(base(), actor=None)
    updated = await hub.servers.update("jira", {"description": "x"}, actor=None)
    assert updated.description == "x"


async def test_update_validates(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.update(server.id, {"timeout_seconds": 0}, actor=None)
    assert_invalid(info.value, "timeout_seconds")
    assert (await hub.servers.get(server.id)).version == server.version


async def test_update_checks_the_new_url(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.update(
            server.id, {"url": "https://blocked.example/"}, actor=None
        )
    assert_invalid(info.value, "url", hint=None)
    assert hub.reauths.calls == []


async def test_update_refuses_a_taken_name(hub: Hub) -> None:
    await hub.servers.create(base(), actor=None)
    other = await hub.servers.create(base(name="Linear"), actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.update(other.id, {"name": "JIRA"}, actor=None)
    assert_invalid(info.value, "name", "already", hint="choose another name")


async def test_update_may_recase_its_own_name(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    updated = await hub.servers.update(server.id, {"name": "JIRA"}, actor=None)
    assert updated.name == "JIRA"


async def test_update_unknown_server(hub: Hub) -> None:
    with pytest.raises(NotFound):
        await hub.servers.update("nope", {"description": "x"}, actor=None)


async def test_update_to_missing_credential(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    with pytest.raises(ValidationFailed) as info:
        await hub.servers.update(
            server.id, {"auth_mode": "header", "credential_id": "gone"}, actor=None
        )
    assert_invalid(info.value, "credential_id", "'gone'", "does not exist")


async def test_switching_away_from_header_mode_clears_the_header_fields(
    hub: Hub,
) -> None:
    cred = await hub.credentials.create("tok", SECRET, actor=None)
    server = await hub.servers.create(
        base(auth_mode="header", credential_id=cred.id, header_name="X-Key"),
        actor=None,
    )
    updated = await hub.servers.update(server.id, {"auth_mode": "none"}, actor=None)
    assert (updated.header_name, updated.header_scheme, updated.credential_id) == (
        None,
        None,
        None,
    )
    assert hub.reauths.calls == [(server.id, "auth_mode")]


TRIGGER_CHANGES: dict[str, dict[str, Any]] = {
    "url": {"url": "https://new.example.com/mcp"},
    "auth_mode": {"auth_mode": "none"},
    "oauth.registration": {"oauth": {"registration": "dynamic"}},
    "oauth.client_id": {"oauth": {"client_id": "client-2"}},
    "oauth.client_secret_credential_id": {
        "oauth": {"client_secret_credential_id": "<cred>"}
    },
    "oauth.token_auth_method": {"oauth": {"token_auth_method": "client_secret_post"}},
    "oauth.scopes": {"oauth": {"scopes": "read write"}},
    "oauth.authorization_params": {"oauth": {"authorization_params": {}}},
    "oauth.token_params": {"oauth": {"token_params": {"audience": "other"}}},
    "oauth.authorization_server": {
        "oauth": {"authorization_server": "https://as.example.com"}
    },
    "oauth.per_user": {"oauth": {"per_user": True}},
    "oauth.resource_match": {"oauth": {"resource_match": "prefix"}},
    "oauth.resource_expected": {
        "oauth": {"resource_expected": "https://other.example.com/mcp"}
    },
    "oauth.legacy_endpoints": {"oauth": {"legacy_endpoints": True}},
    "oauth.grant": {"oauth": {"grant": "client_credentials"}},
    "oauth.private_key_credential_id": {
        "oauth": {"private_key_credential_id": "<cred>"}
    },
    "oauth.signing_algorithm": {"oauth": {"signing_algorithm": "ES256"}},
    "oauth.idp_token_endpoint": {
        "oauth": {"idp_token_endpoint": "https://idp.example.com/token"}
    },
    "oauth.idp_client_id": {"oauth": {"idp_client_id": "idp-1"}},
    "oauth.idp_client_secret_credential_id": {
        "oauth": {"idp_client_secret_credential_id": "<cred>"}
    },
    "oauth.idp_id_token_credential_id": {
        "oauth": {"idp_id_token_credential_id": "<cred>"}
    },
    "oauth.assertion_credential_id": {"oauth": {"assertion_credential_id": "<cred>"}},
    "oauth.dpop": {"oauth": {"dpop": "auto"}},
}


def test_every_trigger_has_a_case() -> None:
    assert set(TRIGGER_CHANGES) == set(REAUTH_TRIGGERS)


@pytest.mark.parametrize("trigger", REAUTH_TRIGGERS)
async def test_each_trigger_calls_on_reauth_naming_the_field(
    hub: Hub, trigger: str
) -> None:
    cred = await hub.credentials.create("client-secret", SECRET, actor=None)
    server = await oauth_server(hub)
    changes = json.loads(
        json.dumps(TRIGGER_CHANGES[trigger]).replace("<cred>", cred.id)
    )
    updated = await hub.servers.update(server.id, changes, actor="bob")
    assert hub.reauths.calls == [(server.id, trigger)]
    event = (await hub.events())[-1]
    assert event.action == "server.update"
    assert event.detail == f"re-authorization required: {trigger}"
    assert changed_triggers(server, updated) == [trigger]


async def test_several_triggers_are_named_together_in_one_call(hub: Hub) -> None:
    server = await oauth_server(hub)
    await hub.servers.update(
        server.id,
        {"url": "https://new.example.com/mcp", "oauth": {"scopes": "all"}},
        actor=None,
    )
    assert hub.reauths.calls == [(server.id, "url, oauth.scopes")]


NON_TRIGGERS: list[dict[str, Any]] = [
    {"description": "new words"},
    {"enabled": False},
    {"timeout_seconds": 120},
    {"name": "Jira Cloud"},
    {"oauth": {"require_refresh_token": True}},
    {"oauth": {"allow_missing_pkce_metadata": True}},
]


@pytest.mark.parametrize("changes", NON_TRIGGERS)
async def test_non_trigger_change_keeps_grants_but_drops_the_tool_cache(
    hub: Hub, changes: dict[str, Any]
) -> None:
    server = await oauth_server(hub)
    await hub.stores.tools.put(
        ToolCacheEntry(server.id, "shared", [{"name": "search"}], T0)
    )
    await hub.servers.update(server.id, changes, actor=None)
    assert hub.reauths.calls == []
    assert await hub.stores.tools.get(server.id, "shared") is None
    assert (await hub.events())[-1].detail is None


async def test_trigger_change_drops_the_tool_cache_too(hub: Hub) -> None:
    server = await oauth_server(hub)
    await hub.stores.tools.put(ToolCacheEntry(server.id, "alice", [], T0))
    await hub.servers.update(server.id, {"url": "https://n.example/mcp"}, actor=None)
    assert await hub.stores.tools.get(server.id, "alice") is None


async def test_noop_update_triggers_nothing(hub: Hub) -> None:
    server = await oauth_server(hub)
    await hub.servers.update(server.id, {}, actor=None)
    assert hub.reauths.calls == []


def test_changed_triggers_nothing_for_equal_records() -> None:
    record = ServerRecord(id="a", name="n", url="https://x.example")
    assert changed_triggers(record, record.replace(description="other")) == []


# ------------------------------------------------------------------ delete


async def test_delete(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    await hub.stores.tools.put(ToolCacheEntry(server.id, "shared", [], T0))
    await hub.servers.delete("jira", actor="carol")
    assert await hub.servers.list() == []
    assert await hub.stores.tools.get(server.id, "shared") is None
    with pytest.raises(NotFound):
        await hub.servers.get(server.id)
    event = (await hub.events())[-1]
    assert event.action == "server.delete"
    assert event.actor == "carol"
    assert event.target_id == server.id
    assert event.before == {"id": server.id, "name": "Jira"}
    assert event.after is None


async def test_delete_unknown(hub: Hub) -> None:
    with pytest.raises(NotFound) as info:
        await hub.servers.delete("ghost", actor=None)
    assert "'ghost'" in info.value.message


async def test_name_is_free_again_after_delete(hub: Hub) -> None:
    server = await hub.servers.create(base(), actor=None)
    await hub.servers.delete(server.id, actor=None)
    await hub.servers.create(base(), actor=None)


# ------------------------------------------------------------------ audit


def _dump(events: list[AuditEvent]) -> str:
    return json.dumps([asdict(e) for e in events], default=str)


async def test_update_audit_has_before_and_after(hub: Hub) -> None:
    server = await hub.servers.create(base(description="old"), actor=None)
    await hub.servers.update(server.id, {"description": "new"}, actor="dave")
    event = (await hub.events())[-1]
    assert event.actor == "dave"
    assert event.before is not None
    assert event.after is not None
    assert event.before["description"] == "old"
    assert event.after["description"] == "new"
    assert event.before["version"] == 1
    assert event.after["version"] == 2


async def test_audit_masks_refs_and_secret_params_and_never_holds_a_value(
    hub: Hub,
) -> None:
    header_cred = await hub.credentials.create("header", SECRET, actor="root")
    client_cred = await hub.credentials.create("client", SECRET + "-2", actor="root")
    server = await hub.servers.create(
        base(auth_mode="header", credential_id=header_cred.id), actor="root"
    )
    await hub.servers.update(
        server.id,
        {
            "auth_mode": "oauth",
            "oauth": {
                "registration": "manual",
                "client_id": "public-client",
                "client_secret_credential_id": client_cred.id,
                "authorization_params": {"api_key": SECRET, "prompt": "consent"},
                "token_params": {"my_token": SECRET, "audience": "api"},
            },
        },
        actor="root",
    )
    await hub.servers.update(server.id, {"description": "x"}, actor="root")
    await hub.servers.delete(server.id, actor="root")

    events = await hub.events()
    create = next(e for e in events if e.action == "server.create")
    assert create.after is not None
    assert create.after["credential_id"] == MASK
    update = next(e for e in events if e.action == "server.update")
    assert update.after is not None
    oauth = update.after["oauth"]
    assert oauth["client_secret_credential_id"] == MASK
    assert oauth["client_id"] == "public-client"
    assert oauth["authorization_params"] == {"api_key": MASK, "prompt": "consent"}
    assert oauth["token_params"] == {"my_token": MASK, "audience": "api"}

    assert SECRET not in _dump(events)
    # the server entries mask which credential is used (the credential's own entries
    # name it as their target, which is fine: an id is not a value)
    server_text = _dump([e for e in events if e.target_type == "server"])
    assert header_cred.id not in server_text
    assert client_cred.id not in server_text
    assert [e.action for e in events] == [
        "credential.create",
        "credential.create",
        "server.create",
        "server.update",
        "server.update",
        "server.delete",
    ]


def test_server_view_for_every_mode_is_json() -> None:
    from tether.hub.audit import server_view

    record = ServerRecord(id="a", name="n", url="https://x.example")
    assert json.loads(json.dumps(server_view(record)))["credential_id"] is None
