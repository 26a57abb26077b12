"""KB entries with full version history (DESIGN §3: every edit bumps ``version`` and is kept).

``kb_entries`` holds the current version of each entry, ``kb_history`` every version ever
saved (append-only). Retiring is a new version with status ``retired``: nothing is deleted,
so the history of an answer an agent once sent stays explainable.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assist.errors import ConflictError, KbEntryExists, KbEntryNotFound
from assist.shop.models import KbEntry, KbStatus
from assist.store._sql import as_utc, utcnow
from assist.store.models import KbEntryRow, KbHistoryRow

# Fields that do not make a new version by themselves: they are what saving sets.
_BOOKKEEPING = {"version", "updated_at"}
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


def _content(entry: KbEntry) -> dict[str, Any]:
    return entry.model_dump(mode="json", exclude=_BOOKKEEPING)


class KbRepo:
    """One tenant's KB entries in the caller's session; returns ``assist.shop.KbEntry`` values.

    The live retriever is not touched here: after a write commits, the service calls
    ``retriever.upsert(entry)`` / ``retriever.retire(entry_id)`` with the returned entry.
    """

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self._s = session
        self.tenant = tenant

    async def find(self, entry_id: str) -> KbEntry | None:
        row = await self._s.get(KbEntryRow, (self.tenant, entry_id), populate_existing=True)
        return KbEntry.model_validate(row.entry) if row else None

    async def get(self, entry_id: str) -> KbEntry:
        """The current version; raises ``KbEntryNotFound``."""
        entry = await self.find(entry_id)
        if entry is None:
            raise KbEntryNotFound(f"KB entry {entry_id!r} not found")
        return entry

    async def list_entries(
        self, *, status: KbStatus | None = None, include_retired: bool = False
    ) -> list[KbEntry]:
        """Current versions ordered by id: one ``status``, or all but retired (unless asked)."""
        stmt = select(KbEntryRow.entry).where(KbEntryRow.tenant_id == self.tenant).order_by(KbEntryRow.id)
        if status is not None:
            stmt = stmt.where(KbEntryRow.status == status.value)
        elif not include_retired:
            stmt = stmt.where(KbEntryRow.status != KbStatus.retired.value)
        return [KbEntry.model_validate(doc) for doc in await self._s.scalars(stmt)]

    async def history(self, entry_id: str) -> list[KbEntry]:
        """Every saved version, oldest first; raises ``KbEntryNotFound``."""
        docs = list(
            await self._s.scalars(
                select(KbHistoryRow.entry)
                .where(KbHistoryRow.tenant_id == self.tenant, KbHistoryRow.entry_id == entry_id)
                .order_by(KbHistoryRow.version)
            )
        )
        if not docs:
            raise KbEntryNotFound(f"KB entry {entry_id!r} not found")
        return [KbEntry.model_validate(d) for d in docs]

    async def create(self, entry: KbEntry, *, now: datetime | None = None) -> KbEntry:
        """Store a new entry as version 1; raises ``KbEntryExists`` (also for a retired id)."""
        # Checked first so an id already loaded in this session gives KbEntryExists rather
        # than the ORM's identity-map FlushError; the IntegrityError path covers races.
        if await self._s.get(KbEntryRow, (self.tenant, entry.id)) is not None:
            raise KbEntryExists(f"KB entry {entry.id!r} already exists")
        saved = entry.model_copy(update={"version": 1, "updated_at": as_utc(now) if now else utcnow()})
        self._add(saved)
        try:
            await self._s.flush()
        except IntegrityError as exc:
            raise KbEntryExists(f"KB entry {entry.id!r} already exists") from exc
        return saved

    async def upsert(
        self, entry: KbEntry, *, expected_version: int | None = None, now: datetime | None = None
    ) -> KbEntry:
        """Create (version 1) or replace (current version + 1) an entry; return what was saved.

        ``expected_version`` is optimistic locking for editors: when given and the stored
        version differs (0 meaning "must not exist"), ``ConflictError`` is raised instead of
        overwriting someone else's edit. Saving content identical to the current version is
        a no-op returning it, so a retried PUT does not mint a new version.
        """
        now = as_utc(now) if now else utcnow()
        # FOR UPDATE on PostgreSQL serialises concurrent edits of one entry, so two editors
        # cannot both write version n+1 (the history primary key would refuse the second).
        row = await self._s.get(KbEntryRow, (self.tenant, entry.id), with_for_update=True, populate_existing=True)
        current = row.version if row else 0
        if expected_version is not None and expected_version != current:
            raise ConflictError(
                f"KB entry {entry.id!r} is at version {current}, not {expected_version}: reload and retry"
            )
        if row is not None:
            stored = KbEntry.model_validate(row.entry)
            if _content(stored) == _content(entry):
                return stored
        saved = entry.model_copy(update={"version": current + 1, "updated_at": now})
        try:
            if row is None:
                self._add(saved)
            else:
                row.entry = saved.model_dump(mode="json")
                row.version = saved.version
                row.status = saved.status.value
                row.updated_at = now
                self._s.add(self._history(saved, now))
            await self._s.flush()
        except IntegrityError as exc:
            raise ConflictError(f"KB entry {entry.id!r} was changed concurrently: reload and retry") from exc
        return saved

    async def retire(self, entry_id: str, *, now: datetime | None = None) -> KbEntry:
        """Take an entry out of service (a new version with status retired); raises ``KbEntryNotFound``.

        Retiring a retired entry returns it unchanged.
        """
        current = await self.get(entry_id)
        if current.status is KbStatus.retired:
            return current
        return await self.upsert(current.model_copy(update={"status": KbStatus.retired}), now=now)

    async def seed(self, entries: Iterable[KbEntry], *, now: datetime | None = None) -> int:
        """Import entries from a shop directory, keeping their file ``version``; return how many were written.

        An entry absent from the store is inserted; one whose file version is higher than the
        stored version replaces it (the file was edited offline); otherwise the store wins,
        since edits made through the API are newer than the file they started from.
        """
        now = as_utc(now) if now else utcnow()
        todo = {e.id: e for e in entries}
        ids = list(todo)
        stored: dict[str, int] = {}
        for i in range(0, len(ids), _CHUNK):
            rows = await self._s.execute(
                select(KbEntryRow.id, KbEntryRow.version)
                .where(KbEntryRow.tenant_id == self.tenant, KbEntryRow.id.in_(ids[i : i + _CHUNK]))
            )
            stored.update({r.id: r.version for r in rows})
        new = [e for e in todo.values() if e.id not in stored]
        newer = [e for e in todo.values() if e.id in stored and e.version > stored[e.id]]
        for e in new:
            self._add(e if e.updated_at else e.model_copy(update={"updated_at": now}))
        for e in newer:
            row = await self._s.get(KbEntryRow, (self.tenant, e.id), with_for_update=True)
            assert row is not None
            saved = e if e.updated_at else e.model_copy(update={"updated_at": now})
            row.entry = saved.model_dump(mode="json")
            row.version = saved.version
            row.status = saved.status.value
            row.updated_at = now
            self._s.add(self._history(saved, now))
        try:
            await self._s.flush()
        except IntegrityError as exc:
            raise ConflictError(f"KB seed conflicted with a concurrent edit: {exc.orig}") from exc
        return len(new) + len(newer)

    def _add(self, entry: KbEntry) -> None:
        stamp = entry.updated_at or utcnow()
        self._s.add(
            KbEntryRow(
                tenant_id=self.tenant, id=entry.id, entry=entry.model_dump(mode="json"), version=entry.version,
                status=entry.status.value, updated_at=as_utc(stamp),
            )
        )
        self._s.add(self._history(entry, as_utc(stamp)))

    def _history(self, entry: KbEntry, saved_at: datetime) -> KbHistoryRow:
        return KbHistoryRow(
            tenant_id=self.tenant, entry_id=entry.id, version=entry.version, entry=entry.model_dump(mode="json"),
            status=entry.status.value, saved_at=saved_at,
        )
