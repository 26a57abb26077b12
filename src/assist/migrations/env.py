"""Alembic environment for assist; works for SQLite and PostgreSQL, online and offline.

Normally driven by ``assist.migrations.upgrade_to_head``, which passes an open connection in
``config.attributes["connection"]``. Run through the ``alembic`` command instead (with a
config built by ``assist.migrations.alembic_config``) it opens its own async engine from
``config.attributes["url"]`` or ``ASSIST_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from assist.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from assist.settings import Settings

    return Settings().effective_database_url


def run_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) for DBAs who apply it by hand."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from assist.store.db import create_engine

    engine = create_engine(_url(), schema=config.attributes.get("schema"))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)  # the caller owns the connection and its transaction
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_offline()
else:
    run_online()
