"""Engine set-up, transactions and error translation (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text

import assist.store
from assist.errors import ConflictError, NotReadyError
from assist.store import Database, create_engine, normalise_url
from assist.store.models import CustomerRow

# Marked one by one: this module also has plain sync tests.
on_session_loop = pytest.mark.asyncio(loop_scope="session")


def test_exports_match_all() -> None:
    public = {n for n in dir(assist.store) if not n.startswith("_") and not isinstance(getattr(assist.store, n), ModuleType)}
    assert set(assist.store.__all__) == public - {"annotations"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/a.db", "sqlite+aiosqlite:///var/a.db"),
        ("sqlite+aiosqlite:///var/a.db", "sqlite+aiosqlite:///var/a.db"),
        ("postgresql://u@h:5432/d", "postgresql+asyncpg://u@h:5432/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_normalise_url_picks_the_async_driver(given: str, expected: str) -> None:
    assert normalise_url(given).render_as_string(hide_password=False) == expected


def test_bad_urls_and_schemas_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        normalise_url("mysql://u@h/d")
    with pytest.raises(ValueError, match="PostgreSQL"):
        create_engine("sqlite:///x.db", schema="s")
    with pytest.raises(ValueError, match="lowercase identifier"):
        create_engine("postgresql://u@h/d", schema='x"; drop table turns; --')


@on_session_loop
async def test_sqlite_connections_are_durable_and_enforce_foreign_keys(tmp_path: Path) -> None:
    async with Database.open(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'a.db'}") as db:
        async with db.engine.connect() as conn:
            got = [
                (await conn.execute(text(f"PRAGMA {p}"))).scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
    assert got == ["wal", 1, 1, 5000]  # synchronous 1 == NORMAL (WAL: a commit survives SIGKILL)
    assert (tmp_path / "sub" / "dir" / "a.db").exists(), "the parent directory is created"


@on_session_loop
async def test_a_unit_commits_on_exit_and_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as uow:
            await uow.conversations.ensure("gone")
            raise RuntimeError("boom")
    async with db.transaction() as uow:
        assert await uow.conversations.find("gone") is None
        await uow.conversations.ensure("kept")
    async with db.transaction() as uow:
        assert await uow.conversations.find("kept") is not None


@on_session_loop
async def test_untranslated_integrity_errors_become_conflicts(db: Database) -> None:
    async with db.transaction() as uow:
        await uow.customers.upsert("u1", {"tier": "vip"})
    with pytest.raises(ConflictError):
        async with db.transaction() as uow:
            uow.session.add(CustomerRow(id="u1", profile={}, created_at=datetime.now(UTC), updated_at=datetime.now(UTC)))


@on_session_loop
async def test_nested_units_on_sqlite_fail_loudly_instead_of_deadlocking(tmp_path: Path) -> None:
    async with Database.open(f"sqlite:///{tmp_path / 'a.db'}") as db:
        async with db.transaction():
            with pytest.raises(RuntimeError, match="nested"):
                async with db.transaction():
                    pass


@on_session_loop
async def test_unreachable_or_unmigrated_database_is_not_ready(tmp_path: Path) -> None:
    async with Database.open("postgresql://postgres@127.0.0.1:1/test") as db:
        with pytest.raises(NotReadyError):
            await db.ping()
    async with Database.open(f"sqlite:///{tmp_path / 'empty.db'}") as db:
        await db.ping()  # reachable
        with pytest.raises(NotReadyError, match="no such table"):
            async with db.transaction() as uow:
                await uow.conversations.find("c1")


@on_session_loop
async def test_ping_answers_on_a_live_database(db: Database) -> None:
    await db.ping()



@on_session_loop
async def test_sqlite_full_synchronous_can_be_chosen(tmp_path: Path) -> None:
    async with Database.open(f"sqlite:///{tmp_path / 'f.db'}", sqlite_synchronous="FULL") as db:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL: fsync per commit
