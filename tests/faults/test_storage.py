"""Storage faults during a refresh: read-only, full, a terminated PostgreSQL backend.

Real stores and the real peers (oidc-provider rotating refresh tokens on every use):
each case ends with the grant intact (the refresh token the store holds is active at
the AS and a fresh process can refresh and call), or cleanly refused with nothing sent,
and prints which path the fault took:

* ``refused`` - the store failed before the token request (the lease write proves it
  writable first), so the AS rotated nothing;
* ``write`` - the commit succeeded at once; ``retry`` - after failed attempts
  (``GrantWriter.apply(retry_storage=True)``);
* ``journal`` - the store refused every retry: the tokens stayed in the sealed journal
  (DUR-1), the process used them from memory, and the next start stored them (DUR-2).

The other start-up faults of issue 11 are proven where the code lives and listed in
:data:`ELSEWHERE`; kill -9 of each flow is ``tests/grants/test_kill.py`` (refresh) and
``test_kill_flows.py`` (connect, disconnect, URL change).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from grants.common import open_tether
from grants.harness import (
    Grant,
    Worker,
    create_grant,
    expire_access_token,
    grant_alive,
    stored,
    token_lines,
)
from hub.conftest import authorize, introspect
from peers.fixture import Peers
from store.conftest import SKIP_PG, _pg_admin, postgres_schema
from tether.errors import StorageError
from tether.hub.tether import Tether

pytestmark = pytest.mark.realservers

ELSEWHERE = {
    "a missing key file beside sealed secrets": (
        "tests/store/test_startup.py::test_a_missing_key_file_beside_secrets_is_refused"
    ),
    "a database missing or truncated to 0 bytes": (
        "tests/store/test_startup.py::"
        "test_a_lost_database_beside_a_used_key_file_is_refused"
    ),
    "a corrupted SQLite file (quick_check)": (
        "tests/store/test_startup.py::test_a_damaged_sqlite_file_is_refused, "
        "tests/cli/test_rough_edges.py::test_a_damaged_database_is_refused_by_every_command"
    ),
    "kill -9 mid-refresh (30 trials per backend)": (
        "tests/grants/test_kill.py::"
        "test_every_lost_grant_was_killed_inside_the_unclosable_window"
    ),
    "a journal line cut short or sealed with another key": (
        "tests/store/test_journal.py::test_unreadable_lines_are_kept_and_logged"
    ),
}
"""Issue 11's other faults, proven beside the code they test (not duplicated)."""


def test_the_start_up_faults_are_proven_elsewhere() -> None:
    """Every referenced test exists (a rename here must not silently drop a case)."""
    root = Path(__file__).resolve().parents[2]
    for where in ELSEWHERE.values():
        for ref in where.split(", "):
            path, _, name = ref.partition("::")
            assert f"def {name}(" in (root / path).read_text(), ref


# ---------------------------------------------------------------- helpers


def engine_of(tether: Tether) -> Any:
    """The SQLAlchemy engine under a SQL store (the backend's ``dispose`` owner)."""
    return tether.stores.closers[0].__self__.engine


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: read-only even for root (tests may run as root)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make a file read-only for root")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode:
        pytest.skip(f"this filesystem has no immutable flag: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def after_token_answer(tether: Tether, fault: Callable[[], Awaitable[None]]) -> None:
    """Run ``fault`` once, right after the first token endpoint answer."""
    original = tether.fetcher.request
    fired: list[bool] = []

    async def request(method: str, url: str, **kwargs: Any) -> Any:
        response = await original(method, url, **kwargs)
        if kwargs.get("step") == "token" and not fired:
            fired.append(True)
            await fault()
        return response

    setattr(tether.fetcher, "request", request)  # noqa: B010


def count_writes(tether: Tether) -> list[str]:
    """Outcomes of every connection-store write: ``ok`` or ``failed``."""
    store = tether.stores.connections
    original = store.save
    outcomes: list[str] = []

    async def save(conn: Any, *, expected_version: int) -> Any:
        try:
            result = await original(conn, expected_version=expected_version)
        except StorageError:
            outcomes.append("failed")
            raise
        outcomes.append("ok")
        return result

    setattr(store, "save", save)  # noqa: B010
    return outcomes


def path_of(writes: list[str], journaled: bool) -> str:
    if journaled:
        return "journal"
    return "retry" if "failed" in writes else "write"


async def assert_alive(grant: Grant) -> None:
    """The stored refresh token is active at the AS; a fresh process refreshes, calls."""
    alive = await grant_alive(grant, {"lease_ttl_seconds": 2.0})
    assert alive.refresh_token_active, alive
    assert alive.alive, alive


@contextlib.asynccontextmanager
async def sqlite_grant(
    peers: Peers, tmp_path: Path, name: str
) -> AsyncIterator[tuple[Grant, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "tether.db"
    grant = await create_grant(peers, f"sqlite+aiosqlite:///{db}", tmp_path, name=name)
    yield grant, db


# ---------------------------------------------------------------- read-only


async def test_a_process_started_on_a_read_only_store_is_refused_clearly(
    storm_peers: Peers, tmp_path: Path
) -> None:
    """A separate process opening a read-only database stops at once, saying why."""
    async with sqlite_grant(storm_peers, tmp_path, "ro0") as (grant, db):
        with immutable(db):
            worker = await Worker.spawn(grant, "check", 0)
            with pytest.raises(RuntimeError, match="for writing") as caught:
                await worker.ready()
        assert "lsattr" in str(caught.value)
        await assert_alive(grant)


async def test_a_read_only_store_refuses_before_the_token_request(
    storm_peers: Peers, tmp_path: Path
) -> None:
    """The store turns read-only under a running process with a refresh due."""
    async with sqlite_grant(storm_peers, tmp_path, "ro1") as (grant, db):
        await expire_access_token(grant)
        tether = await open_tether(grant.database_url, grant.key)
        try:
            before = len(token_lines(grant.auth))
            with immutable(db):
                await engine_of(tether).dispose()  # new connections open read-only
                with pytest.raises(StorageError):
                    await tether.refresh(grant.server_name)
            # the lease write failed first: the AS rotated nothing
            assert len(token_lines(grant.auth)) == before
            print("\nread-only store at the start of a refresh: path refused")
        finally:
            await tether.aclose()
        await assert_alive(grant)


async def test_a_store_turning_read_only_after_the_answer_takes_the_journal_path(
    storm_peers: Peers, tmp_path: Path
) -> None:
    async with sqlite_grant(storm_peers, tmp_path, "ro2") as (grant, db):
        await expire_access_token(grant)
        tether = await open_tether(grant.database_url, grant.key)
        stack = contextlib.ExitStack()
        try:
            old = (await stored(tether, grant.server_id)).refresh_token
            assert old is not None

            async def read_only() -> None:
                stack.enter_context(immutable(db))
                await engine_of(tether).dispose()  # new connections open read-only

            after_token_answer(tether, read_only)
            writes = count_writes(tether)
            info = await tether.refresh(grant.server_name)
            assert info.status == "connected"
            journal = tether.ctx.journal
            assert journal is not None
            assert len(journal.pending()) == 1
            assert writes == ["failed"] * 5  # every retry refused
            # this process goes on with the tokens it holds
            result = await tether.call_tool(grant.server_name, "echo", {"text": "x"})
            assert not result.is_error, result.text
            print(f"\nread-only store after the answer: path {path_of(writes, True)}")
        finally:
            stack.close()
            await tether.aclose()
        # the next start stores them (DUR-2); the used refresh token is dead at the AS
        assert not introspect(grant.auth, old.get_secret_value())["active"]
        fresh = await open_tether(grant.database_url, grant.key)
        try:
            replayed = fresh.connections.recovery.replayed
            assert [(r.kind, r.outcome) for r in replayed] == [("refresh", "applied")]
            actions = [e.action for e in await fresh.stores.audit.list()]
            assert "connection.journal_replay" in actions
            assert fresh.ctx.journal is not None
            assert fresh.ctx.journal.pending() == []
        finally:
            await fresh.aclose()
        await assert_alive(grant)


async def test_a_store_turning_read_only_during_connect_completion_keeps_the_grant(
    storm_peers: Peers, tmp_path: Path
) -> None:
    """The code exchange's tokens outlive a store that refuses them (DUR-1, DUR-2)."""
    async with sqlite_grant(storm_peers, tmp_path, "ro3") as (grant, db):
        tether = await open_tether(grant.database_url, grant.key)
        stack = contextlib.ExitStack()
        try:
            await tether.disconnect(grant.server_name, actor="test")
            params = await authorize(tether, grant.server_name)

            async def read_only() -> None:
                stack.enter_context(immutable(db))
                await engine_of(tether).dispose()

            after_token_answer(tether, read_only)
            with pytest.raises(StorageError):
                await tether.complete(params, user="admin")
            journal = tether.ctx.journal
            assert journal is not None
            assert [r.kind for r in journal.pending()] == ["connect"]
            print("\nread-only store at connect completion: path journal")
        finally:
            stack.close()
            await tether.aclose()
        fresh = await open_tether(grant.database_url, grant.key)
        try:
            replayed = fresh.connections.recovery.replayed
            assert [(r.kind, r.outcome) for r in replayed] == [("connect", "applied")]
            assert (await stored(fresh, grant.server_id)).status == "connected"
        finally:
            await fresh.aclose()
        await assert_alive(grant)


# ---------------------------------------------------------------- full


async def fill(engine: Any, limit: int) -> None:
    """Fill every free byte under ``limit`` pages with filler rows (a full disk)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    size = 4096
    while size >= 1:
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"PRAGMA max_page_count = {limit}")
                await conn.exec_driver_sql(
                    "INSERT INTO filler VALUES (zeroblob(?))", (size,)
                )
        except sa.exc.OperationalError:
            size //= 2


@pytest.mark.parametrize("headroom", [*range(8), "filled"])
async def test_a_full_store_keeps_the_grant(
    storm_peers: Peers, tmp_path: Path, headroom: int | str
) -> None:
    """``PRAGMA max_page_count`` a few pages above the size stands in for a full disk.

    ``filled``: no headroom, and every free byte of the last pages taken as well.
    """
    async with sqlite_grant(storm_peers, tmp_path, f"full{headroom}") as (grant, _db):
        await expire_access_token(grant)
        tether = await open_tether(grant.database_url, grant.key)
        engine = engine_of(tether)
        try:
            async with engine.connect() as conn:
                pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar()
            limit = int(pages) + (headroom if isinstance(headroom, int) else 1)
            if headroom == "filled":
                await fill(engine, limit)

            def cap(dbapi: Any, _record: Any) -> None:
                cursor = dbapi.cursor()
                cursor.execute(f"PRAGMA max_page_count = {limit}")
                cursor.close()

            sa.event.listen(engine.sync_engine, "connect", cap)
            await engine.dispose()
            writes = count_writes(tether)
            before = len(token_lines(grant.auth))
            try:
                info = await tether.refresh(grant.server_name)
                assert info.status == "connected"
                journal = tether.ctx.journal
                assert journal is not None
                path = path_of(writes, bool(journal.pending()))
            except StorageError:
                path = "refused"
            if path == "refused":
                assert len(token_lines(grant.auth)) == before  # nothing was sent
            sa.event.remove(engine.sync_engine, "connect", cap)
            await engine.dispose()
        finally:
            await tether.aclose()
        level = (
            "filled to the byte" if headroom == "filled" else f"{headroom} pages free"
        )
        print(f"\nfull store, {level}: path {path}")
        await assert_alive(grant)


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
@SKIP_PG
@pytest.mark.parametrize("fault", ["terminate", "read_only"])
async def test_a_postgres_fault_mid_refresh_keeps_the_grant(
    storm_peers: Peers, tmp_path: Path, fault: str
) -> None:
    """Right after the token answer, this process's backends are terminated.

    ``terminate``: that alone (the pool reconnects; the write or a retry stores the
    tokens). ``read_only``: the role's sessions also turn read-only first, as after a
    fail-over to a standby, so every retry fails: the journal keeps the tokens and the
    next start, with the store writable again, stores them.
    """
    async with postgres_schema() as url:
        role = url.rpartition("//")[2].partition("@")[0]
        options = {"journal_path": str(tmp_path / "token-journal")}
        grant = await create_grant(storm_peers, url, tmp_path, name="pgfault")
        await expire_access_token(grant)
        tether = await open_tether(url, grant.key, options)

        async def strike() -> None:
            where = f"usename = '{role}'"  # our own test role
            statements = [
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}"  # noqa: S608
            ]
            if fault == "read_only":
                statements.insert(
                    0, f'ALTER ROLE "{role}" SET default_transaction_read_only = on'
                )
            await _pg_admin(*statements)

        after_token_answer(tether, strike)
        writes = count_writes(tether)
        try:
            info = await tether.refresh(grant.server_name)
            assert info.status == "connected"
            journal = tether.ctx.journal
            assert journal is not None
            path = path_of(writes, bool(journal.pending()))
        finally:
            await tether.aclose()
            await _pg_admin(f'ALTER ROLE "{role}" RESET default_transaction_read_only')
        print(f"\nPostgreSQL {fault} after the token answer: path {path}")
        if fault == "read_only":
            assert path == "journal", writes
        else:
            assert path in ("write", "retry"), writes
        fresh = await open_tether(url, grant.key, options)  # replays the journal
        await fresh.aclose()
        await assert_alive(grant)
