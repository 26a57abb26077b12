"""Throw-away databases for tests: a SQLite file, or a private schema in a real PostgreSQL.

Any test suite (store, service, replay) can run against both backends with::

    @pytest.fixture(scope="session")
    async def databases(tmp_path_factory):
        dbs = CleanDatabases(tmp_path_factory.mktemp("db"))
        yield dbs
        await dbs.close()

    @pytest.fixture(params=["sqlite", "postgresql"])
    async def db(request, databases):
        return await databases.get(request.param)      # migrated once, emptied per test

``temporary_database`` gives a brand-new (optionally unmigrated) database instead, for tests of
migrations or of several processes.

PostgreSQL comes from ``ASSIST_TEST_PG_URL`` (default: the local server,
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``). Each database is a schema named
``<session prefix>_<n>``, where the prefix is unique per process, so parallel test runs on one
server never see each other's tables; the schema is dropped afterwards. When the server is
unreachable the PostgreSQL variant is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import text

from assist.store.db import Database, create_engine, normalise_url
from assist.store.models import Base

Backend = Literal["sqlite", "postgresql"]

PG_URL = os.environ.get("ASSIST_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# One prefix per process: schemas of concurrent runs (CI shards, two developers) never collide.
SCHEMA_PREFIX = f"assist_t{os.getpid()}_{secrets.token_hex(3)}"
_counter = itertools.count(1)
_pg_unreachable: dict[str, str | None] = {}


async def pg_unreachable_reason(url: str = PG_URL) -> str | None:
    """None when PostgreSQL at ``url`` answers, else why not (cached per URL for the process)."""
    if url not in _pg_unreachable:
        engine = create_engine(url, pool_size=1)
        try:
            async with asyncio.timeout(5):
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            _pg_unreachable[url] = None
        except Exception as exc:  # any failure to connect means "skip", with the reason
            shown = normalise_url(url).render_as_string(hide_password=True)
            _pg_unreachable[url] = f"PostgreSQL at {shown} unreachable: {type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
    return _pg_unreachable[url]


async def create_schema(url: str = PG_URL) -> str:
    """Create a fresh, uniquely named schema and return its name."""
    name = f"{SCHEMA_PREFIX}_{next(_counter)}"
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{name}"'))
    finally:
        await engine.dispose()
    return name


async def drop_schemas(names: list[str] | None = None, *, url: str = PG_URL) -> None:
    """Drop the given schemas, or every schema of this process's prefix."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            if names is None:
                rows = await conn.execute(
                    text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": SCHEMA_PREFIX + "_%"}
                )
                names = [r[0] for r in rows]
            for name in names:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        await engine.dispose()


@asynccontextmanager
async def temporary_database(
    backend: Backend, tmp_path: Path, *, migrate: bool = True, url: str = PG_URL
) -> AsyncIterator[Database]:
    """An empty database of ``backend`` (migrated to head unless ``migrate=False``), removed after.

    Calls ``pytest.skip`` for PostgreSQL when the server is unreachable.
    """
    if backend == "sqlite":
        db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'assist.db'}")
        try:
            if migrate:
                await db.migrate()
            yield db
        finally:
            await db.close()
        return
    reason = await pg_unreachable_reason(url)
    if reason is not None:
        import pytest

        pytest.skip(reason)
    schema = await create_schema(url)
    db = Database.open(url, schema=schema)
    try:
        if migrate:
            await db.migrate()
        yield db
    finally:
        await db.close()
        await drop_schemas([schema], url=url)


class CleanDatabases:
    """One migrated database per backend for a test session; ``get`` empties it for each test.

    Emptying with DELETE is ~10 ms where creating and migrating a schema is ~300 ms (and
    TRUNCATE ~150 ms), which keeps a suite that runs every test on both backends fast.
    Identity counters are not reset, so tests must not assume absolute row ids.
    """

    def __init__(self, workdir: Path, *, pg_url: str = PG_URL) -> None:
        self._workdir = workdir
        self._pg_url = pg_url
        self._dbs: dict[str, Database] = {}
        self._schemas: list[str] = []

    async def get(self, backend: Backend) -> Database:
        """The backend's session database, emptied; skips (pytest) when PostgreSQL is unreachable."""
        db = self._dbs.get(backend)
        if db is None:
            db = await self._create(backend)
            self._dbs[backend] = db
        async with db.transaction() as uow:
            # Children first, so foreign keys never see an orphan.
            for table in reversed(Base.metadata.sorted_tables):
                await uow.session.execute(table.delete())
        return db

    async def _create(self, backend: Backend) -> Database:
        if backend == "sqlite":
            db = Database.open(f"sqlite+aiosqlite:///{self._workdir / 'session.db'}")
        else:
            reason = await pg_unreachable_reason(self._pg_url)
            if reason is not None:
                import pytest

                pytest.skip(reason)
            schema = await create_schema(self._pg_url)
            self._schemas.append(schema)
            db = Database.open(self._pg_url, schema=schema)
        await db.migrate()
        return db

    async def close(self) -> None:
        for db in self._dbs.values():
            await db.close()
        self._dbs.clear()
        if self._schemas:
            await drop_schemas(self._schemas, url=self._pg_url)
            self._schemas.clear()


__all__ = [
    "PG_URL",
    "SCHEMA_PREFIX",
    "CleanDatabases",
    "create_schema",
    "drop_schemas",
    "pg_unreachable_reason",
    "temporary_database",
]
