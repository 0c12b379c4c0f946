"""The sealed token journal file (DUR-1, DUR-3): format, seal, settle, contention."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.config import Settings
from tether.errors import DecryptionError, StorageError
from tether.store.crypto import KeyRing, generate_key
from tether.store.journal import (
    JournalRecord,
    TokenJournal,
    decode_line,
    encode_line,
    journal_location,
    journal_path_for,
)

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def record(n: int = 1, *, server: str = "s1", subject: str = "shared") -> JournalRecord:
    return JournalRecord(
        id=f"r{n:04d}",
        kind="refresh",
        server_id=server,
        subject=subject,
        created_at=T0,
        used_refresh_token=f"rt-{n - 1}",
        grant_epoch=3,
        fields={"access_token": f"at-{n}", "refresh_token": f"rt-{n}"},
    )


def test_a_line_round_trips_and_never_shows_a_token() -> None:
    ring = KeyRing.generate()
    line = encode_line(ring, record(7))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"rt-7" not in line
    assert b"at-7" not in line
    assert b"rt-6" not in line
    opened = decode_line(ring, line.decode())
    assert opened == record(7)
    assert "rt-" not in repr(opened)
    assert "at-" not in repr(opened)


def test_a_line_moved_to_another_connection_does_not_open() -> None:
    ring = KeyRing.generate()
    mine = encode_line(ring, record(1)).decode().split(" ")
    theirs = encode_line(ring, record(1, server="s2")).decode().split(" ")
    forged = " ".join([mine[0], mine[1], theirs[2], mine[3]])  # s2's header, s1's body
    with pytest.raises(DecryptionError, match="journal"):
        decode_line(ring, forged)
    with pytest.raises(DecryptionError):
        decode_line(KeyRing.generate(), " ".join(mine))  # another key


@pytest.mark.parametrize(
    "line", ["", "P r1", "D r1", "P r1 !!! v1.x.y", "P r1 eyJrIjoieCJ9 v1.x.y"]
)
def test_lines_that_are_not_records_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="journal"):
        decode_line(KeyRing.generate(), line)


def test_the_file_is_private_and_settle_removes_only_its_record(tmp_path: Path) -> None:
    journal = TokenJournal(tmp_path / "j", KeyRing.generate())
    assert journal.pending() == []
    for n in (1, 2, 3):
        journal.append(record(n, subject=f"u{n}"))
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o600
    journal.settle("r0002")
    assert [r.id for r in journal.pending()] == ["r0001", "r0003"]
    assert [r.id for r in journal.pending("s1", "u3")] == ["r0003"]
    assert journal.pending("s9") == []
    journal.settle("r0001")
    journal.settle("r0003")
    assert (tmp_path / "j").read_bytes() == b""  # nothing pending: an empty file
    journal.settle("r0003")  # settling twice is harmless


def test_unreadable_lines_are_kept_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j"
    old = TokenJournal(path, KeyRing.generate())
    old.append(record(1))
    with path.open("ab") as cut:
        cut.write(b"P r9 half-a-line")  # a write cut short
    journal = TokenJournal(path, KeyRing.generate())  # the key was replaced
    journal.append(record(2))
    with caplog.at_level(logging.WARNING):
        assert [r.id for r in journal.pending()] == ["r0002"]
    assert "cannot be read" in caplog.text
    assert "rt-" not in caplog.text
    journal.settle("r0002")
    assert [r.id for r in old.pending()] == ["r0001"]  # the old key still opens it


def test_an_unwritable_journal_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    journal = TokenJournal(tmp_path / "file" / "j", KeyRing.generate())
    with pytest.raises(StorageError, match="cannot be written"):
        journal.append(record())


def test_a_missing_folder_is_created_private(tmp_path: Path) -> None:
    journal = TokenJournal(tmp_path / "home" / "j", KeyRing.generate())
    journal.append(record())
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    assert len(journal.pending()) == 1


def test_the_shells_put_a_postgres_journal_in_the_home_folder(tmp_path: Path) -> None:
    pg = Settings(home=tmp_path, database_url="postgresql+asyncpg://h/db")
    assert pg.resolved_journal_path() == tmp_path / "token-journal"
    assert Settings(home=tmp_path).resolved_journal_path() is None  # beside SQLite


def test_where_the_journal_lives(tmp_path: Path) -> None:
    db = tmp_path / "tether.db"
    assert journal_path_for(db) == tmp_path / "tether.db.token-journal"
    assert journal_location(f"sqlite+aiosqlite:///{db}") == journal_path_for(db)
    assert journal_location("memory://") is None
    assert journal_location("memory://", tmp_path / "x") is None
    assert journal_location("postgresql+asyncpg://h/db") is None
    assert journal_location("postgresql+asyncpg://h/db", tmp_path / "x") == (
        tmp_path / "x"
    )


APPENDER = """
import sys
from datetime import UTC, datetime
from tether.store.crypto import KeyRing, generate_key
from tether.store.journal import JournalRecord, TokenJournal

path, key, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
journal = TokenJournal(path, KeyRing.from_string(key))
sys.stdin.readline()  # the barrier
for n in range(count):
    rid = f"{name}-{n:03d}"
    journal.append(JournalRecord(rid, "refresh", "s1", name, datetime.now(UTC),
                                 "old", 0, {"access_token": "a" * 200}))
    if n % 2:
        journal.settle(rid)  # odd records settle at once, racing the others' appends
"""


async def test_processes_append_and_settle_concurrently_without_loss(
    tmp_path: Path,
) -> None:
    """Four OS processes append 60 records each, settling every other one at once."""
    text = generate_key()
    key = KeyRing.from_string(text)
    path = tmp_path / "j"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            APPENDER,
            str(path),
            text,
            f"p{i}",
            "60",
            stdin=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        for i in range(4)
    ]
    for proc in procs:  # released together: real contention on the file
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    codes = [await asyncio.wait_for(proc.wait(), 300) for proc in procs]
    assert codes == [0, 0, 0, 0]
    pending = sorted(r.id for r in TokenJournal(path, key).pending())
    expected = sorted(f"p{i}-{n:03d}" for i in range(4) for n in range(0, 60, 2))
    assert pending == expected
