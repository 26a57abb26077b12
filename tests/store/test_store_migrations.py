"""Alembic migrations from an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from assist.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_to_head,
    upgrade_to_head_sync,
)
from assist.store import Database, create_engine
from assist.store.models import Base
from assist.store.testing import temporary_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

TABLES = {"conversations", "frames", "turns", "feedback", "customers", "kb_entries", "kb_history", "outbox",
          "tenants", "api_keys",
          "replays", "quality_defects", "quality_alerts"}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata))


async def test_upgrade_from_empty_creates_every_table_and_matches_the_models(backend: str, tmp_path: Path) -> None:
    async with temporary_database(backend, tmp_path, migrate=False) as db:  # type: ignore[arg-type]
        assert await current_revision(db.engine) is None
        assert await _tables(db) == set()
        await upgrade_to_head(db.engine)
        assert await current_revision(db.engine) == head_revision() == "0003"
        assert await _tables(db) == TABLES
        await upgrade_to_head(db.engine)  # idempotent: every start-up calls it
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert diff == [], f"models and migrations disagree: {diff}"
        # The schema works end to end right after migrating.
        async with db.transaction() as uow:
            await uow.conversations.ensure("c1")
            assert (await uow.conversations.insert_turn("c1", turn_id="t", role="customer", text="在吗"))[1]


async def test_downgrade_to_base_and_back(backend: str, tmp_path: Path) -> None:
    async with temporary_database(backend, tmp_path) as db:  # type: ignore[arg-type]
        async with db.engine.connect() as conn:
            await conn.run_sync(_alembic, "downgrade", "base")
            await conn.commit()
        assert await _tables(db) == set()
        assert await current_revision(db.engine) is None
        await db.migrate()
        assert await _tables(db) == TABLES


def _alembic(conn: Connection, cmd: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, cmd)(cfg, revision)


async def test_replicas_starting_together_migrate_once(backend: str, tmp_path: Path) -> None:
    async with temporary_database(backend, tmp_path, migrate=False) as db:  # type: ignore[arg-type]
        engines = [create_engine(db.url, schema=db.schema) for _ in range(3)]
        try:
            await asyncio.gather(*(upgrade_to_head(e) for e in engines))
        finally:
            for e in engines:
                await e.dispose()
        assert await current_revision(db.engine) == head_revision()
        assert await _tables(db) == TABLES


async def test_upgrade_from_a_url_without_an_event_loop(tmp_path: Path) -> None:
    # What a CLI does: a plain sync call with a URL, no engine, no running loop in its thread.
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'cli.db'}"
    await asyncio.to_thread(upgrade_to_head_sync, url)
    async with Database.open(url) as db:
        assert await current_revision(db.engine) == head_revision()
