"""Alembic migrations of the store, runnable from code at start-up.

The Alembic config is built here, pointing at this package directory, so nothing depends on
an ``alembic.ini`` or the working directory and it works the same from a wheel install.

    await upgrade_to_head(settings.effective_database_url)   # in the app lifespan
    upgrade_to_head_sync(url)                                 # from a CLI / script (no running loop)

New revision (from a checkout)::

    python -c "from assist.migrations import alembic_config; from alembic import command; \\
               command.revision(alembic_config('sqlite+aiosqlite:///var/dev.db'), 'what', autogenerate=True)"
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Alembic's ``context`` is a process-global proxy: two commands running at once in one process
# (two engines in one event loop, or a CLI thread) overwrite each other's environment. A
# thread lock covers every loop and thread; database-level locks cover other processes.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(url: str | URL | None = None, *, schema: str | None = None) -> Config:
    """An Alembic ``Config`` for this package; ``url``/``schema`` are used when env.py connects itself."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as attributes, not main options: ConfigParser would choke on '%' in passwords.
    if url is not None:
        cfg.attributes["url"] = str(url) if isinstance(url, str) else url.render_as_string(hide_password=False)
    cfg.attributes["schema"] = schema
    return cfg


def head_revision() -> str:
    """The newest revision id shipped with this version of assist."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade_to_head(
    target: str | URL | AsyncEngine, *, schema: str | None = None, revision: str = "head"
) -> None:
    """Migrate the database at ``target`` (a URL or an engine) to ``revision``; idempotent.

    Safe to call from several replicas starting at once: on PostgreSQL the upgrade runs
    under a transaction-scoped advisory lock, so one replica migrates and the others then
    find nothing to do. On SQLite, ``BEGIN IMMEDIATE`` gives the same exclusion. The whole
    upgrade is one transaction on both (transactional DDL), so a failure leaves the old schema.
    """
    from assist.store.db import create_engine

    engine = target if isinstance(target, AsyncEngine) else create_engine(target, schema=schema)
    # Polled rather than acquired in a worker thread, so cancelling this coroutine can never
    # leave the lock taken by a thread nobody will release it from.
    while not _ALEMBIC_LOCK.acquire(blocking=False):  # noqa: ASYNC110 - a thread lock has no awaitable
        await asyncio.sleep(0.01)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext('assist.migrations:' || current_schema()))")
                )
            await conn.run_sync(_upgrade, revision)
            await conn.commit()
    finally:
        _ALEMBIC_LOCK.release()
        if engine is not target:
            await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def upgrade_to_head_sync(url: str | URL, *, schema: str | None = None) -> None:
    """``upgrade_to_head`` for code without a running event loop (CLI, scripts)."""
    asyncio.run(upgrade_to_head(url, schema=schema))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade_to_head",
    "upgrade_to_head_sync",
]
