"""Alembic environment for Tether's SQL store.

Two ways in:

* :func:`tether.store.migrate.migrate` passes an open (sync-facing) connection in
  ``config.attributes["connection"]``; the migration runs inside its transaction.
* The ``alembic`` command line: the URL comes from ``-x url=…`` or ``sqlalchemy.url`` in
  ``alembic.ini``, and an async engine is created here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from tether.store.database import create_engine
from tether.store.schema import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or config.get_main_option("sqlalchemy.url") or ""


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_async())
    else:
        _run(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
