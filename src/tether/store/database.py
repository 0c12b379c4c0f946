"""The SQL seam: engine set-up, error translation, atomic-write helpers, key rotation.

``sql.py`` builds the stores on top of this module. Driver exceptions become
:class:`~tether.errors.StorageError` subtypes here and nowhere else
(:func:`storage_errors`; design-notes S6).

SQLite runs in WAL mode with foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` for
every transaction, so two writers queue instead of failing on a lock upgrade. PostgreSQL
uses its defaults (READ COMMITTED); every atomic step is a single statement.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tether.errors import (
    ConfigurationError,
    NotFound,
    StorageError,
    TetherError,
    VersionConflict,
)
from tether.store import schema
from tether.store.crypto import KeyRing, SecretRef, make_private_directory
from tether.store.rules import id_taken, name_taken, server_missing
from tether.store.sealing import (
    SECRET_FIELDS,
    connection_ref,
    credential_ref,
    pending_ref,
    registration_ref,
)

__all__ = [
    "DAMAGED_HINT",
    "SqlBackend",
    "cas_update",
    "conflict",
    "count_sealed_secrets",
    "create_engine",
    "private_sqlite_files",
    "sqlite_path",
    "sqlite_quick_check",
    "storage_errors",
    "unique",
    "upsert",
]

logger = logging.getLogger(__name__)
_warned: set[Path] = set()

SQLITE_BUSY_TIMEOUT_MS = 30_000
IntegrityHandler = Callable[[str], TetherError]


def _driver_message(exc: sa_exc.DBAPIError) -> str:
    # The first line of the driver's message only: SQLAlchemy's own str() appends the
    # statement and its parameters, which we keep out of errors and logs.
    return (
        str(exc.orig).strip().splitlines()[0]
        if exc.orig is not None
        else type(exc).__name__
    )


@contextlib.contextmanager
def storage_errors(on_integrity: IntegrityHandler | None = None) -> Iterator[None]:
    """Translate SQLAlchemy and driver exceptions into ``StorageError`` subtypes.

    Args:
        on_integrity: Builds the error for a unique or primary-key violation (the caller
            knows which field clashed); a foreign-key violation is always "server does
            not exist".

    Raises:
        NotFound: A foreign key to ``servers`` failed.
        ValidationFailed, VersionConflict: Whatever ``on_integrity`` returns.
        StorageError: Any other database failure.
    """
    try:
        yield
    except sa_exc.IntegrityError as exc:
        message = _driver_message(exc)
        if "foreign key" in message.lower():
            raise server_missing() from exc
        if on_integrity is not None:
            raise on_integrity(message) from exc
        raise StorageError(f"a database constraint failed: {message}") from exc
    except sa_exc.DBAPIError as exc:
        message = _driver_message(exc)
        raise StorageError(
            f"the database failed: {message}", hint=_driver_hint(message)
        ) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StorageError(f"the database layer failed: {type(exc).__name__}") from exc
    except OSError as exc:
        raise StorageError(
            f"cannot reach the database: {exc.strerror or exc}",
            hint="check the database URL and that the server is running",
        ) from exc


_DAMAGED = ("malformed", "not a database", "file is encrypted", "corrupt")
DAMAGED_HINT = (
    "the database file is damaged: restore it from a backup (`tether migrate` cannot "
    "repair it); to start over instead, move it away and run with `--fresh-start`"
)


def _driver_hint(message: str) -> str:
    lowered = message.lower()
    if any(word in lowered for word in _DAMAGED):
        return DAMAGED_HINT
    if "readonly" in lowered or "read-only" in lowered:
        return "make the database file and its folder writable by this user"
    return "check that the database is reachable and migrated (`tether migrate`)"


def _is_duplicate(message: str) -> bool:
    # SQLite: "UNIQUE constraint failed: t.c"; PostgreSQL: "duplicate key value …".
    lowered = message.lower()
    return "unique" in lowered or "duplicate" in lowered


def unique(kind: str, record_id: str, name: str) -> IntegrityHandler:
    """Map a unique violation to "name taken" or "id taken"."""

    def handler(message: str) -> TetherError:
        if not _is_duplicate(message):
            return StorageError(f"a database constraint failed: {message}")
        if "name_key" in message:
            return name_taken(kind, name)
        return id_taken(kind, record_id)

    return handler


def conflict(what: str) -> IntegrityHandler:
    """Map a primary-key violation on insert to a lost compare-and-set."""

    def handler(message: str) -> TetherError:
        if not _is_duplicate(message):
            return StorageError(f"a database constraint failed: {message}")
        return VersionConflict(f"{what} was created by someone else")

    return handler


# --------------------------------------------------------------------- engine


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that _on_begin can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL URL, configured for Tether.

    ``pool_size`` caps the connections a process holds (no overflow); by default
    SQLAlchemy's pool is used (5 plus 10 overflow). No Tether operation holds a
    connection across network I/O, so a small pool serves many concurrent calls.

    Raises:
        ConfigurationError: An unsupported URL, an in-memory SQLite database (use
            ``memory://``), or a missing driver (names the extra to install).
    """
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        if driver != "aiosqlite":
            raise ConfigurationError(
                f"SQLite needs the aiosqlite driver, not {driver!r}",
                hint="use a URL like sqlite+aiosqlite:///path/to/tether.db",
            )
        if parsed.database in (None, "", ":memory:"):
            raise ConfigurationError(
                "an in-memory SQLite database is not supported",
                hint="use memory:// for throwaway stores, or a file path",
            )
        private_sqlite_files(Path(parsed.database).expanduser())
    elif backend == "postgresql":
        if driver != "asyncpg":
            raise ConfigurationError(
                f"PostgreSQL needs the asyncpg driver, not {driver!r}",
                hint="use a URL like postgresql+asyncpg://user@host/db",
            )
    else:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r}",
            hint="use memory://, sqlite+aiosqlite:///… or postgresql+asyncpg://…",
        )
    try:
        options: dict[str, Any] = {}
        if pool_size is not None:
            options.update(pool_size=pool_size, max_overflow=0)
        engine = create_async_engine(parsed, **options)
    except ModuleNotFoundError as exc:
        # aiosqlite is a core dependency; asyncpg comes with the postgres extra.
        package = "'tether-mcp[postgres]'" if backend == "postgresql" else "aiosqlite"
        raise ConfigurationError(
            f"the database driver {exc.name!r} is not installed",
            hint=f"pip install {package}",
        ) from exc
    if backend == "sqlite":
        _install_sqlite_pragmas(engine)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or ``None`` for any other database."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if database in (None, "", ":memory:"):
        return None
    return Path(database).expanduser()


def private_sqlite_files(path: Path) -> None:
    """Create the database's folder 0700 and the file 0600, and tighten what exists.

    The database holds the audit log, subjects and server URLs in plain text. SQLite
    gives its ``-wal``, ``-shm`` and ``-journal`` files the main file's mode, so the
    file is created 0600 before SQLite first opens it; files an older version left with
    wider permissions are narrowed.

    Raises:
        ConfigurationError: The folder or file cannot be created.
    """
    make_private_directory(path.parent)
    _warn_if_shared(path.parent)
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        if existed:  # a read-only file or file system (issue 11 item 1)
            raise ConfigurationError(
                f"cannot open the database file {path} for writing: "
                f"{exc.strerror or exc}",
                hint="Tether writes its database: check the file's permissions and "
                "attributes (`ls -l`, `lsattr`) and that its file system is writable",
            ) from exc
        raise ConfigurationError(
            f"cannot create the database file {path}: {exc.strerror or exc}",
            hint="set TETHER_HOME or TETHER_DATABASE_URL to a path this user can write",
        ) from exc
    os.close(fd)
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):  # absent, or not ours to change
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                file.chmod(0o600)


def _warn_if_shared(folder: Path) -> None:
    # An existing folder keeps its mode (it may be shared on purpose), but the operator
    # hears that others can list it; the files themselves are 0600.
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & 0o077 and folder not in _warned:
            _warned.add(folder)  # once per process, not once per engine
            logger.warning(
                "the data folder %s is open to other users (mode %04o); "
                "run `chmod 700 %s`",
                folder,
                mode,
                folder,
            )


_DAMAGE_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def sqlite_quick_check(path: Path) -> str | None:
    """Run ``PRAGMA quick_check`` on a SQLite file; ``None`` when it passes.

    Only damage is reported. A file that cannot be checked for another reason (read-only
    without its ``-shm``, locked, unreadable) passes here: opening the store then
    reports the real problem, with its own hint.

    Returns:
        The first problem SQLite reports, or its corruption error.
    """
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name in _DAMAGE_CODES or not isinstance(exc, sqlite3.OperationalError):
            return str(exc)
        return None
    problems = [str(row[0]) for row in rows if row and row[0] != "ok"]
    return problems[0] if problems else None


async def count_sealed_secrets(url: str) -> int:
    """How many rows of the database at ``url`` hold an encrypted secret.

    Tables or columns an older schema lacks count as empty; a database without tables
    holds none.

    Raises:
        ConfigurationError, StorageError: As :func:`create_engine` and the driver.
    """
    engine = create_engine(url)
    try:
        with storage_errors():
            async with engine.connect() as conn:
                present = await conn.run_sync(_sealed_columns)
                total = 0
                for table, columns in present:
                    where = sa.or_(*(table.c[name].is_not(None) for name in columns))
                    query = sa.select(sa.func.count()).select_from(table).where(where)
                    total += int(await conn.scalar(query) or 0)
                return total
    finally:
        await engine.dispose()


def _sealed_columns(connection: sa.Connection) -> list[tuple[sa.Table, list[str]]]:
    inspector = sa.inspect(connection)
    names = set(inspector.get_table_names())
    found = []
    for table, _keys, _ref in _SEALED_TABLES.values():
        if table.name not in names:
            continue
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        columns = [c.name for c in table.c if c.name.endswith("_enc")]
        columns = [name for name in columns if name in existing]
        if columns:
            found.append((table, columns))
    return found


# --------------------------------------------------------------------- backend


def dialect_module(conn: AsyncConnection) -> Any:
    """``sqlalchemy.dialects.postgresql`` or ``.sqlite``, imported when first used.

    A SQLite process never loads the PostgreSQL dialect (~2 MiB; issue 9, memory).
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql
    from sqlalchemy.dialects import sqlite

    return sqlite


def upsert(conn: AsyncConnection, table: sa.Table, row: Mapping[str, Any]) -> Any:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` for either dialect."""
    keys = [c.name for c in table.primary_key.columns]
    insert = dialect_module(conn).insert(table).values(**row)
    changes = {name: insert.excluded[name] for name in row if name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=changes)


def upsert_many(conn: AsyncConnection, table: sa.Table, columns: Sequence[str]) -> Any:
    """:func:`upsert` without values, for an executemany over rows of ``columns``."""
    keys = [c.name for c in table.primary_key.columns]
    insert = dialect_module(conn).insert(table)
    changes = {name: insert.excluded[name] for name in columns if name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=changes)


class SqlBackend:
    """An engine, the key ring and the clock, shared by the SQL stores."""

    def __init__(
        self, engine: AsyncEngine, key_ring: KeyRing, now: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self.key_ring = key_ring
        self.now = now
        self._sqlite = engine.dialect.name == "sqlite"

    @contextlib.asynccontextmanager
    async def begin(
        self, on_integrity: IntegrityHandler | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction, with driver errors translated (:func:`storage_errors`).

        On SQLite the transaction is shielded from cancellation (design-notes
        D3.5.1): a cancellation waits for it to end, then takes effect.
        """
        with anyio.CancelScope(shield=self._sqlite), storage_errors(on_integrity):
            async with self.engine.begin() as conn:
                yield conn

    async def fetch_all(self, query: sa.Select[Any]) -> list[Mapping[str, Any]]:
        """Run a read-only query and return its rows as mappings."""
        async with self.begin() as conn:
            return list((await conn.execute(query)).mappings())

    async def fetch_one(self, query: sa.Select[Any]) -> Mapping[str, Any] | None:
        """The first row of a read-only query, or ``None``."""
        found = await self.fetch_all(query)
        return found[0] if found else None

    async def dispose(self) -> None:
        """Close the connection pool."""
        await self.engine.dispose()

    async def rotate_secrets(self) -> dict[str, int]:
        """Re-seal every secret with the newest key; rows changed per record kind.

        Idempotent: values already sealed by the newest key are left alone. Each row is
        rewritten only if its ciphertext is still what was read, so a concurrent write
        is never overwritten with older data.
        """
        counts: dict[str, int] = {}
        for kind, (table, key_columns, ref) in _SEALED_TABLES.items():
            counts[kind] = await self._rotate_table(
                table, key_columns, SECRET_FIELDS[kind], ref
            )
        return counts

    async def _rotate_table(
        self,
        table: sa.Table,
        key_columns: Sequence[str],
        fields: Sequence[str],
        ref: Callable[..., SecretRef],
    ) -> int:
        columns = [table.c[name] for name in key_columns] + [
            table.c[f"{f}_enc"] for f in fields
        ]
        changed = 0
        async with self.begin() as conn:
            for row in (await conn.execute(sa.select(*columns))).mappings():
                key = [row[name] for name in key_columns]
                updates = {}
                for field in fields:
                    sealed = row[f"{field}_enc"]
                    new = (
                        None
                        if sealed is None
                        else self.key_ring.reseal(sealed, ref(*key, field))
                    )
                    if new is not None:
                        updates[f"{field}_enc"] = new
                if not updates:
                    continue
                where = [table.c[name] == row[name] for name in key_columns]
                where += [table.c[name] == row[name] for name in updates]
                await conn.execute(sa.update(table).where(*where).values(**updates))
                changed += 1
        return changed


_SEALED_TABLES: Mapping[
    str, tuple[sa.Table, tuple[str, ...], Callable[..., SecretRef]]
] = {
    "credential": (schema.credentials, ("id",), credential_ref),
    "registration": (
        schema.client_registrations,
        ("server_id", "issuer"),
        registration_ref,
    ),
    "connection": (schema.connections, ("server_id", "subject"), connection_ref),
    "pending": (schema.pending_authorizations, ("state",), pending_ref),
}


async def cas_update(
    conn: AsyncConnection,
    table: sa.Table,
    where: tuple[sa.ColumnElement[bool], ...],
    expected_version: int,
    values: Mapping[str, Any],
    what: str,
) -> datetime | None:
    """``UPDATE … WHERE version = :expected``; returns the stored ``created_at``, if any.

    Raises:
        NotFound: No such row.
        VersionConflict: The row is at another version.
    """
    has_created = "created_at" in table.c
    statement = (
        sa.update(table)
        .where(*where, table.c.version == expected_version)
        .values(**values, version=expected_version + 1)
        .returning(table.c.created_at if has_created else table.c.version)
    )
    found = (await conn.execute(statement)).first()
    if found is not None:
        created: datetime | None = found[0] if has_created else None
        return created
    version = await conn.scalar(sa.select(table.c.version).where(*where))
    if version is None:
        raise NotFound(f"{what} does not exist")
    raise VersionConflict(f"{what} is at version {version}, not {expected_version}")
