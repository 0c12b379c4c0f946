"""Journal, hold and replay tokens an AS issued when the store refuses them (DUR-1, DUR-2).

A store that fails on demand between the token answer and the commit needs error
injection (the real-store faults - read-only, full, terminated backend, SIGKILL - are in
``tests/faults``); the journal, the hub and the compare-and-set are real.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hub.test_refresh_classes import T0, World, secret, tokens, world
from tether.errors import StorageError
from tether.hub.context import HubConfig
from tether.hub.recovery import from_wire, replay_change, to_wire
from tether.hub.tether import Tether
from tether.store.base import Connection
from tether.store.crypto import KeyRing
from tether.store.journal import JournalRecord, TokenJournal


def journaled(w: World, path: Path) -> TokenJournal:
    """Give the world a journal (memory stores have none of their own)."""
    journal = TokenJournal(path, KeyRing.generate())
    w.ctx.journal = journal
    return journal


def failing_saves(w: World, failures: int) -> list[int]:
    """The next ``failures`` connection writes raise StorageError; counts attempts."""
    store = w.stores.connections
    original = store.save
    attempts: list[int] = []

    async def save(conn: Connection, *, expected_version: int) -> Connection:
        attempts.append(1)
        if len(attempts) <= failures:
            raise StorageError("disk I/O error (injected)")
        return await original(conn, expected_version=expected_version)

    setattr(store, "save", save)  # noqa: B010
    return attempts


async def test_the_answer_is_journaled_before_the_commit_and_settled_after(
    tmp_path: Path,
) -> None:
    w = await world([tokens(1)])
    journal = journaled(w, tmp_path / "j")
    seen: list[list[str | None]] = []
    store = w.stores.connections
    original = store.save

    async def save(conn: Connection, *, expected_version: int) -> Connection:
        seen.append([r.used_refresh_token for r in journal.pending()])
        return await original(conn, expected_version=expected_version)

    setattr(store, "save", save)  # noqa: B010
    conn = await w.refresh()
    assert secret(conn.refresh_token) == "rt-1"
    assert seen == [["rt-0"]]  # pending while the store wrote
    assert journal.pending() == []  # settled once stored


async def test_retries_absorb_a_brief_store_failure(tmp_path: Path) -> None:
    """Path "retry": two failed writes, the third stores; nothing stays journaled."""
    w = await world([tokens(1)])
    journal = journaled(w, tmp_path / "j")
    attempts = failing_saves(w, 2)
    conn = await w.refresh()
    assert len(attempts) == 3
    assert secret((await w.stored()).refresh_token) == "rt-1"
    assert secret(conn.refresh_token) == "rt-1"
    assert journal.pending() == []


async def test_a_store_that_keeps_failing_leaves_the_tokens_journaled_and_held(
    tmp_path: Path,
) -> None:
    """Path "journal": the store refuses every retry; the process keeps the tokens."""
    w = await world([tokens(1)])
    journal = journaled(w, tmp_path / "j")
    failing_saves(w, 10**6)
    conn = await w.refresh()
    assert secret(conn.access_token) == "at-1"  # this process goes on with them
    assert secret((await w.stored()).refresh_token) == "rt-0"  # the store has not
    [record] = journal.pending()
    assert record.used_refresh_token == "rt-0"
    assert record.fields["refresh_token"] == "rt-1"
    # the next use: the replay still fails, the held tokens serve, the AS is not asked
    again = await w.refresh()
    assert secret(again.access_token) == "at-1"
    assert len(w.fetcher.requests) == 1


async def test_the_next_refresh_replays_once_the_store_heals(tmp_path: Path) -> None:
    w = await world([tokens(1)])
    journal = journaled(w, tmp_path / "j")
    store = w.stores.connections
    healthy = store.save
    failing_saves(w, 10**6)
    await w.refresh()
    setattr(store, "save", healthy)  # noqa: B010 - the disk was freed
    w.clock.at = T0 + timedelta(hours=2)  # the held access token expired too
    w.fetcher.script.append(tokens(2))
    conn = await w.refresh()
    # the replay stored rt-1 first, so the refresh sent rt-1 (not the dead rt-0)
    assert w.fetcher.requests[-1].form["refresh_token"] == "rt-1"
    assert secret(conn.refresh_token) == "rt-2"
    assert journal.pending() == []
    replay = [e for e in await w.stores.audit.list() if "journal" in e.action]
    assert [e.after for e in replay] == [
        {"kind": "refresh", "outcome": "applied", "status": "connected"}
    ]


async def test_an_unwritable_journal_does_not_stop_the_refresh(tmp_path: Path) -> None:
    w = await world([tokens(1)])
    (tmp_path / "file").write_text("")
    journaled(w, tmp_path / "file" / "j")  # a folder that cannot exist
    conn = await w.refresh()
    assert secret(conn.refresh_token) == "rt-1"


async def test_without_a_journal_a_failing_store_raises(tmp_path: Path) -> None:
    w = await world([tokens(1)])
    failing_saves(w, 10**6)
    with pytest.raises(StorageError):
        await w.refresh()


# ------------------------------------------------------------------ pure rules


def stored_conn(**changes: Any) -> Connection:
    base = Connection(
        server_id="s1",
        subject="shared",
        status="connected",
        access_token=SecretStr("at-0"),
        refresh_token=SecretStr("rt-0"),
        updated_at=T0 - timedelta(minutes=1),
        grant_epoch=2,
    )
    return base.replace(**changes)


def refresh_record(used: str = "rt-0", epoch: int = 2) -> JournalRecord:
    return JournalRecord(
        id="r1",
        kind="refresh",
        server_id="s1",
        subject="shared",
        created_at=T0,
        used_refresh_token=used,
        grant_epoch=epoch,
        fields=to_wire(
            {
                "access_token": SecretStr("at-1"),
                "refresh_token": SecretStr("rt-1"),
                "expires_at": T0 + timedelta(hours=1),
                "scopes": ("read",),
            }
        ),
    )


def connect_record(epoch: int = 2) -> JournalRecord:
    return JournalRecord(
        id="c1",
        kind="connect",
        server_id="s1",
        subject="shared",
        created_at=T0,
        grant_epoch=epoch,
        fields=to_wire(
            {
                "access_token": SecretStr("at-9"),
                "refresh_token": None,
                "connected_at": T0,
                "grant_epoch": epoch,
            }
        ),
    )


def test_fields_round_trip_through_the_wire_form() -> None:
    fields: dict[str, object] = {
        "access_token": SecretStr("a"),
        "refresh_token": None,
        "dpop_key": SecretStr("pem"),
        "expires_at": T0,
        "scopes": ("a", "b"),
        "required_scopes": (),
        "issuer": "https://as",
        "grant_epoch": 4,
    }
    back = from_wire(to_wire(fields))
    assert {
        k: secret(v) if isinstance(v, SecretStr) else v for k, v in back.items()
    } == {k: secret(v) if isinstance(v, SecretStr) else v for k, v in fields.items()}


@pytest.mark.parametrize(
    ("record", "current", "epoch", "applies"),
    [
        (refresh_record(), stored_conn(), 2, True),
        # the commit happened, or a peer refreshed after: superseded
        (refresh_record(), stored_conn(refresh_token=SecretStr("rt-1")), 2, False),
        # disconnected meanwhile
        (
            refresh_record(),
            stored_conn(refresh_token=None, status="disconnected"),
            2,
            False,
        ),
        # the server's grants were invalidated (URL change), or it was deleted
        (refresh_record(), stored_conn(grant_epoch=1), 2, False),
        (refresh_record(), stored_conn(), None, False),
        (connect_record(), stored_conn(), 2, True),
        (connect_record(), stored_conn(updated_at=T0), 2, False),  # the commit
        (connect_record(), stored_conn(updated_at=T0 + timedelta(seconds=1)), 2, False),
        (connect_record(), stored_conn(), 3, False),  # config changed since
        (connect_record(), stored_conn(), None, False),
    ],
)
def test_a_replay_applies_only_over_the_state_it_came_from(
    record: JournalRecord, current: Connection, epoch: int | None, applies: bool
) -> None:
    result = replay_change(record, epoch)(current)
    assert (result is not None) is applies
    if result is not None:
        assert result.status == "connected"
        assert secret(result.access_token) in ("at-1", "at-9")


async def test_a_start_whose_store_refuses_the_replay_keeps_the_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``Tether.replay_journal`` (run by ``Tether.open``) logs and goes on (DUR-2)."""
    w = await world([])
    journal = journaled(w, tmp_path / "j")
    tether = Tether(
        stores=w.stores,
        fetcher=w.fetcher,
        config=HubConfig(redirect_uri="https://tether.example/cb"),
        journal=journal,
    )
    journal.append(refresh_record())
    failing_saves(w, 10**6)
    await tether.replay_journal()
    assert "token journal not replayed yet" in caplog.text
    assert [r.id for r in journal.pending()] == ["r1"]
    assert tether.connections.recovery.replayed == []
