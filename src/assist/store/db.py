"""Engine, sessions and transactions for SQLite (embedded default) and PostgreSQL.

``Database.open(url)`` builds an async engine; ``async with db.transaction() as uow:`` yields
the repositories bound to one session and commits when the block ends. A write the service
acknowledges must be inside a unit that has *exited* before the ack is sent.

SQLite durability: WAL journal with ``synchronous=NORMAL`` by default. A committed transaction
is in the WAL file before the commit returns, so it survives a SIGKILL of the process (the next
open replays the WAL; tests/store/test_store_durability.py kills a writer right after its
commit). ``FULL`` (``ASSIST_SQLITE_SYNCHRONOUS=FULL``) also fsyncs the WAL on every commit, so
an acked turn survives a power cut or kernel crash too; it costs one fsync per commit, and as
the service holds one write lock those fsyncs queue: under bench/ws_load.py at 50 conversations
a slow fsync phase of the disk pushed p99 turn latency from ~0.13 s to seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from assist.errors import ConflictError, NotReadyError
from assist.store.models import DEFAULT_TENANT
from assist.store.unit import UnitOfWork

SqliteSync = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

# search_path is set through a server setting, not SQL: allow plain identifiers only.
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# How long a SQLite connection waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalise_url(url: str | URL) -> URL:
    """The async-driver form of a database URL.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db`` and ``postgresql://`` (or
    ``postgres://``) becomes ``postgresql+asyncpg://``, so a URL copied from elsewhere works.
    Raises ``ValueError`` for other databases.
    """
    u = make_url(str(url).replace("postgres://", "postgresql://", 1)) if isinstance(url, str) else url
    backend = u.get_backend_name()
    if backend == "sqlite":
        return u.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return u.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database {u.drivername!r}: use sqlite or postgresql")


def _sqlite_path(u: URL) -> Path | None:
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("uri"):
        return None
    return Path(db)


def create_engine(
    url: str | URL,
    *,
    schema: str | None = None,
    echo: bool = False,
    sqlite_synchronous: SqliteSync = "NORMAL",
    pool_size: int = 10,
) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` with the store's connection settings.

    ``schema`` (PostgreSQL only) puts every table in that schema via ``search_path``, so
    tests and side-by-side deployments can share one database; it must exist already. For a
    SQLite file the parent directory is created.
    """
    u = normalise_url(url)
    kwargs: dict[str, Any] = {
        "echo": echo,
        # Readable JSON in the database (Chinese text stays Chinese, not \\u escapes).
        "json_serializer": _json_dumps,
    }
    if u.get_backend_name() == "postgresql":
        if schema is not None:
            if not _SCHEMA_RE.match(schema):
                raise ValueError(f"schema {schema!r}: use a lowercase identifier ([a-z_][a-z0-9_]*)")
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        # pre_ping: a replica survives a PostgreSQL restart without serving errors from
        # dead pooled connections.
        return create_async_engine(u, pool_size=pool_size, pool_pre_ping=True, **kwargs)
    if schema is not None:
        raise ValueError("schema= is for PostgreSQL; SQLite keeps one database per file")
    path = _sqlite_path(u)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(u, **kwargs)
    _install_sqlite_hooks(engine, sqlite_synchronous)
    return engine


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _install_sqlite_hooks(engine: AsyncEngine, synchronous: SqliteSync) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below): the sqlite3 driver's legacy mode starts
        # no transaction for SELECT, which breaks read-then-write consistency and savepoints.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer; crash-safe commits
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite, per connection
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front. A deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY if another connection wrote in between, and
        # busy_timeout cannot help it; waiting for the lock at BEGIN can.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (repositories return values, not rows)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class Database:
    """An engine plus a session factory: the store's one entry point.

    Use ``Database.open(url)`` (or wrap an engine from ``create_engine``), then
    ``async with db.transaction() as uow`` for each unit of work, and ``await db.close()``
    at shutdown (or use the Database itself as an async context manager).
    """

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema  # the PostgreSQL schema create_engine was given, for display/subprocesses
        self.sessions = create_session_factory(engine)
        self.dialect: str = engine.dialect.name
        # SQLite allows one writer at a time. Queuing transactions on an asyncio lock keeps
        # them in this event loop instead of in SQLite's busy handler, which sleeps in steps
        # of up to 100 ms and would show up as p99 latency under load. PostgreSQL needs none.
        self._sqlite_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self._lock_owner: asyncio.Task[Any] | None = None

    @classmethod
    def open(cls, url: str | URL, **engine_options: Any) -> Database:
        """``Database(create_engine(url, **engine_options))``; no connection is made yet."""
        return cls(create_engine(url, **engine_options), schema=engine_options.get("schema"))

    @property
    def url(self) -> URL:
        return self.engine.url

    @asynccontextmanager
    async def transaction(self, tenant: str = DEFAULT_TENANT) -> AsyncIterator[UnitOfWork]:
        """A unit of work over ``tenant``'s rows: commits on normal exit, rolls back on an exception.

        ``tenant`` defaults to ``default``, the embedded single-shop service's; a multi-tenant
        caller holds a :meth:`for_tenant` view instead, so it cannot forget to pass it.

        Translates what the repositories left untranslated: an ``IntegrityError`` becomes
        ``ConflictError``; a database that cannot be reached, is locked beyond the busy
        timeout, or has no tables yet becomes ``NotReadyError`` (503, retry later).
        ``AssistError``s raised inside the block pass through unchanged. Do not nest units
        on SQLite: the inner one would wait for the outer one forever, so it raises instead.
        """
        if self._sqlite_lock is None:
            async with self._unit(tenant) as uow:
                yield uow
            return
        if self._sqlite_lock.locked() and self._lock_owner is asyncio.current_task():
            raise RuntimeError("nested Database.transaction() in one task: SQLite would deadlock")
        async with self._sqlite_lock:
            self._lock_owner = asyncio.current_task()
            try:
                async with self._unit(tenant) as uow:
                    yield uow
            finally:
                self._lock_owner = None

    @asynccontextmanager
    async def _unit(self, tenant: str) -> AsyncIterator[UnitOfWork]:
        try:
            async with self.sessions() as session, session.begin():
                yield UnitOfWork(session, tenant)
        except IntegrityError as exc:
            raise ConflictError(f"conflicting write: {exc.orig}") from exc
        except (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError) as exc:
            raise NotReadyError(f"database unavailable: {getattr(exc, 'orig', None) or exc}") from exc

    def for_tenant(self, tenant: str) -> TenantDatabase:
        """This database as seen by one tenant: every ``transaction()`` is scoped to ``tenant``."""
        return TenantDatabase(self, tenant)

    async def ping(self) -> None:
        """Raise ``NotReadyError`` unless the database answers (for ``/readyz``)."""
        async with self.transaction() as uow:
            await uow.session.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (``assist.migrations.upgrade_to_head``)."""
        from assist.migrations import upgrade_to_head

        await upgrade_to_head(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class TenantDatabase:
    """A :class:`Database` bound to one tenant; what each tenant's services are given."""

    db: Database
    tenant: str

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return self.db.transaction(self.tenant)
