"""Bring a SQL database to the newest schema (``tether migrate``; first run on SQLite).

The Alembic environment and revisions ship inside the package (``alembic.ini``,
``migrations/``), so an installed Tether migrates without a source checkout. On
PostgreSQL the upgrade runs under a transaction-scoped advisory lock, so workers starting
together do not run it twice.

Alembic (with the Mako and Pygments it pulls in, ~8 MiB of a process) is imported only
when there is something to upgrade: an open first reads the ``alembic_version`` row with
SQLAlchemy core and compares it with :data:`HEAD` (issue 9, memory). A test keeps
:data:`HEAD` equal to the newest packaged revision.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tether.store.database import create_engine, storage_errors

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "HEAD",
    "alembic_config",
    "current_revision",
    "head_revision",
    "migrate",
]

HEAD = "0005"
"""The newest revision in ``migrations/versions`` (checked by ``tests/store/test_sql.py``)."""

_MIGRATION_LOCK = 0x7E7E_0001  # pg_advisory_xact_lock id for schema upgrades
_VERSION_TABLE = sa.table("alembic_version", sa.column("version_num", sa.String))


def alembic_config() -> Config:
    """The packaged Alembic configuration."""
    from alembic.config import Config

    package = Path(str(files("tether.store")))
    config = Config(str(package / "alembic.ini"))
    config.set_main_option("script_location", str(package / "migrations"))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Tether (read by Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError("no migrations are packaged")
    return head


async def _at_head(conn: AsyncConnection) -> bool:
    """The database records exactly :data:`HEAD` (one row), read without Alembic."""

    def read(sync: sa.Connection) -> list[str]:
        if not sa.inspect(sync).has_table("alembic_version"):
            return []
        return [str(v) for v in sync.execute(sa.select(_VERSION_TABLE)).scalars()]

    return await conn.run_sync(read) == [HEAD]


def _upgrade(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def migrate(url: str, *, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest).

    Idempotent: an up-to-date database is left alone.

    Raises:
        ConfigurationError: Unsupported URL or missing driver.
        StorageError: The database failed or a migration did.
    """
    engine = create_engine(url)
    try:
        with storage_errors():
            if revision in ("head", HEAD):
                async with engine.connect() as conn:
                    if await _at_head(conn):
                        return
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK))
                    )
                await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None``: never migrated)."""
    engine = create_engine(url)
    try:
        with storage_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(_current)
    finally:
        await engine.dispose()
