"""Audit masking and the auditor (design-notes R3.21; ``hub/audit.py``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from tether.hub.audit import MASK, Auditor, mask_params, server_view
from tether.store.base import OAuthSettings, ServerRecord
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
SECRET = "very-secret-value-4242"


@dataclass
class FakeClock:
    at: datetime = T0

    def now(self) -> datetime:
        return self.at


MASKED_KEYS = [
    "client_secret_extra",
    "api_key",
    "apikey",
    "X-Api-Key",
    "access_token",
    "id_token_hint",
    "TOKEN",
    "client_assertion_x",
    "password",
    "db_passwd",
    "my_credential",
    "SecretThing",
]

PLAIN_KEYS = ["prompt", "audience", "resource", "login_hint", "scope", "acr_values"]


@pytest.mark.parametrize("key", MASKED_KEYS)
def test_secret_looking_keys_are_masked(key: str) -> None:
    assert mask_params({key: SECRET}) == {key: MASK}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert mask_params({key: "value"}) == {key: "value"}


def test_null_values_stay_null_even_for_secret_keys() -> None:
    # a null removes a default parameter: showing that is useful and reveals nothing
    assert mask_params({"client_secret_x": None, "prompt": None}) == {
        "client_secret_x": None,
        "prompt": None,
    }


def test_mask_params_returns_a_new_dict() -> None:
    given = {"api_key": SECRET}
    mask_params(given)
    assert given == {"api_key": SECRET}


def _record() -> ServerRecord:
    return ServerRecord(
        id="srv1",
        name="Jira",
        url="https://mcp.example.com/mcp",
        auth_mode="header",
        header_name="X-Key",
        header_scheme="",
        credential_id="cred-header",
        oauth=OAuthSettings(
            registration="manual",
            client_id="public-client",
            client_secret_credential_id="cred-client",
            authorization_params={"prompt": "consent", "api_key": SECRET},
            token_params={"assertion_extra": SECRET, "audience": "api"},
        ),
        allow_networks=("10.0.0.0/8",),
        version=3,
    )


def test_server_view_masks_refs_and_params() -> None:
    view = server_view(_record())
    assert view["credential_id"] == MASK
    assert view["oauth"]["client_secret_credential_id"] == MASK
    assert view["oauth"]["client_id"] == "public-client"
    assert view["oauth"]["authorization_params"] == {
        "prompt": "consent",
        "api_key": MASK,
    }
    assert view["oauth"]["token_params"] == {
        "assertion_extra": MASK,
        "audience": "api",
    }
    text = json.dumps(view)
    assert SECRET not in text
    assert "cred-header" not in text
    assert "cred-client" not in text


def test_server_view_has_every_field_of_the_record() -> None:
    # Derived from the dataclasses: a field added later cannot be left out of the audit.
    view = server_view(_record())
    assert set(view) == {f.name for f in dataclasses.fields(ServerRecord)}
    assert set(view["oauth"]) == {f.name for f in dataclasses.fields(OAuthSettings)}
    assert view["allow_networks"] == ["10.0.0.0/8"]
    assert view["header_scheme"] == ""
    assert view["version"] == 3
    json.dumps(view)


def _another(name: str, value: Any) -> Any:
    """A different value of the same kind, for any field of the records."""
    if name.endswith("_at"):
        return T0
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple):
        return (*value, "changed")
    if isinstance(value, Mapping):
        return {**value, "changed": "x"}
    assert value is None, (name, value)
    return "changed"


def _changes(record: Any) -> list[tuple[str, Any]]:
    return [
        (f.name, _another(f.name, getattr(record, f.name)))
        for f in dataclasses.fields(record)
        if not dataclasses.is_dataclass(getattr(record, f.name))
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    _changes(ServerRecord(id="a", name="n", url="https://x.example")),
)
def test_every_server_field_shows_its_change(name: str, value: Any) -> None:
    before = ServerRecord(id="a", name="n", url="https://x.example")
    after = dataclasses.replace(before, **{name: value})
    assert server_view(before)[name] != server_view(after)[name]
    assert SECRET not in json.dumps(server_view(after))


@pytest.mark.parametrize(("name", "value"), _changes(OAuthSettings()))
def test_every_oauth_field_shows_its_change(name: str, value: Any) -> None:
    before = ServerRecord(id="a", name="n", url="https://x.example")
    after = before.replace(oauth=dataclasses.replace(before.oauth, **{name: value}))
    old, new = server_view(before)["oauth"][name], server_view(after)["oauth"][name]
    assert old != new
    if name.endswith("credential_id"):
        assert (old, new) == (None, MASK)  # which credential is never named


def test_a_secret_value_in_a_record_would_be_masked() -> None:
    @dataclasses.dataclass
    class WithSecret:
        token: SecretStr

    assert _field_view_of(WithSecret(SecretStr(SECRET))) == {"token": MASK}


def _field_view_of(record: Any) -> Any:
    from tether.hub.audit import _record_view

    return _record_view(record)


def test_server_view_without_refs_says_none() -> None:
    view = server_view(ServerRecord(id="a", name="n", url="https://x.example"))
    assert view["credential_id"] is None
    assert view["oauth"]["client_secret_credential_id"] is None
    json.dumps(view)


async def test_auditor_appends_with_the_clock() -> None:
    clock = FakeClock()
    stores, _ = open_memory_stores(KeyRing.generate(), now=clock.now)
    auditor = Auditor(stores.audit, clock)
    await auditor.record(
        "server.update",
        actor="alice",
        target_type="server",
        target_id="srv1",
        server_id="srv1",
        before={"a": 1},
        after={"a": 2},
        detail="why",
    )
    await auditor.record(
        "credential.delete", actor=None, target_type="credential", target_id="c1"
    )
    events = await stores.audit.list(limit=10)
    assert [e.action for e in events] == ["credential.delete", "server.update"]
    latest, first = events
    assert first.at == T0
    assert (first.actor, first.target_type, first.target_id, first.server_id) == (
        "alice",
        "server",
        "srv1",
        "srv1",
    )
    assert (first.before, first.after, first.detail) == ({"a": 1}, {"a": 2}, "why")
    assert latest.actor is None
    assert latest.server_id is None
    assert [e.action for e in await stores.audit.list(server_id="srv1")] == [
        "server.update"
    ]
