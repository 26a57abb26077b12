"""Store fixtures: every test that takes ``db`` runs on SQLite and on PostgreSQL.

Both backends are migrated once per session and emptied before each test (see
``assist.store.testing.CleanDatabases``); PostgreSQL uses a schema private to this test
session, dropped at the end. The PostgreSQL variant is skipped, with the reason, only when
the server at ``ASSIST_TEST_PG_URL`` is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from assist.store import Database
from assist.store.testing import CleanDatabases, drop_schemas, pg_unreachable_reason

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CleanDatabases]:
    dbs = CleanDatabases(tmp_path_factory.mktemp("store"))
    yield dbs
    await dbs.close()
    # Catches schemas left behind by a test that created its own and died half-way.
    if await pg_unreachable_reason() is None:
        await drop_schemas()


@pytest.fixture
async def db(backend: str, databases: CleanDatabases) -> Database:
    return await databases.get(backend)  # type: ignore[arg-type]
