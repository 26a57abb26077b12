"""Dialect-portable SQL pieces shared by the repositories (SQLite and PostgreSQL).

Library errors are translated here, where they enter, so no SQLAlchemy or driver exception
leaks past ``assist.store`` for the expected cases (duplicate keys, missing parents).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assist.store.models import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A caller's timestamp as aware UTC; naive values are read as UTC (the wire format's default)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_json(value: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
    """A pydantic model or mapping as a JSON-ready dict.

    Nested models, datetimes, enums and tuples are converted the way pydantic's JSON mode
    does, so a frame built as a dict with a ``datetime`` in it stores instead of failing in
    the driver's ``json.dumps``.
    """
    if value is None:
        return {}
    doc = to_jsonable_python(value)
    if not isinstance(doc, dict):
        raise TypeError(f"expected a mapping or a pydantic model, got {type(value).__name__}")
    return doc


def to_json_list(values: Iterable[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    return [to_jsonable_python(v) for v in values]


def insert_ignoring_conflicts(session: AsyncSession, entity: type[Base] | Table, index_elements: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for the session's dialect.

    Used instead of select-then-insert so that two writers racing on the same key (a client
    retrying a turn while the first attempt is still in flight, or two replicas) both succeed
    and exactly one row exists.
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(entity).on_conflict_do_nothing(index_elements=index_elements)
    if name == "sqlite":
        return sqlite.insert(entity).on_conflict_do_nothing(index_elements=index_elements)
    raise NotImplementedError(f"assist.store supports sqlite and postgresql, not {name}")


class ConstraintKind(StrEnum):
    unique = "unique"
    foreign_key = "foreign_key"
    other = "other"


def constraint_kind(exc: IntegrityError) -> ConstraintKind:
    """Which kind of constraint an IntegrityError violated, on either backend."""
    orig = exc.orig
    # PostgreSQL SQLSTATE (asyncpg, exposed by SQLAlchemy's adapter as ``sqlstate``).
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state == "23505":
        return ConstraintKind.unique
    if state == "23503":
        return ConstraintKind.foreign_key
    # sqlite3 (Python >= 3.11) names the extended result code; fall back to the message.
    name = getattr(orig, "sqlite_errorname", "") or ""
    text = f"{name} {orig}".upper()
    if "UNIQUE" in text or "PRIMARYKEY" in text or "PRIMARY KEY" in text:
        return ConstraintKind.unique
    if "FOREIGN" in text:
        return ConstraintKind.foreign_key
    return ConstraintKind.other
