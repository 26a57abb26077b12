"""ORM tables of the store (SQLAlchemy 2 typed declarative).

These classes never leave ``assist.store``: repositories turn rows into the value types of
``assist.store.records`` (or ``assist.shop.KbEntry``), so callers cannot lazy-load, mutate a
detached row, or depend on the table layout.

Schema changes go through a new Alembic revision in ``assist/migrations/versions``; a test
compares a migrated database with this metadata so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: Alembic needs names to drop/alter constraints later, and
# SQLite batch migrations rebuild tables by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact); plain JSON text elsewhere.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")

# SQLite has no 64-bit autoincrement other than the INTEGER rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores text without an offset, so values are
    normalised to naive UTC on the way in (keeping text comparison == time comparison, which
    the outbox's ``next_attempt_at <= now`` relies on) and re-tagged as UTC on the way out.
    Naive inputs are refused: guessing a zone is how timestamps silently shift by 8 hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The tenant of rows written before tenants existed (migration 0002), and of the embedded service.
DEFAULT_TENANT = "default"


def _tenant() -> Mapped[str]:
    # Part of every key of tenant-owned rows: two tenants may both have conversation "c1".
    return mapped_column(String(64), primary_key=True, server_default=DEFAULT_TENANT)


def _conversation_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", "conversation_id"], ["conversations.tenant_id", "conversations.id"],
                                ondelete="CASCADE")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UtcDateTime(),
        dict[str, Any]: JsonDoc,
        list[Any]: JsonDoc,
    }


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_tenant_id_customer_id", "tenant_id", "customer_id"),)

    tenant_id: Mapped[str] = _tenant()
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(128))
    # ConversationState.model_dump(mode="json"); the store does not interpret it.
    state: Mapped[dict[str, Any]]
    # Last server-frame seq handed out; allocated with UPDATE ... RETURNING so two writers
    # (two replicas, or a retry racing the original) can never get the same seq.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class FrameRow(Base):
    __tablename__ = "frames"
    __table_args__ = (_conversation_fk(),)

    tenant_id: Mapped[str] = _tenant()
    conversation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    frame: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("tenant_id", "conversation_id", "turn_id"),
        _conversation_fk(),
        # pending_turns() scans by status in arrival order at every start-up.
        Index("ix_turns_status_id", "status", "id"),
        CheckConstraint("status IN ('received', 'processed', 'failed')", name="status"),
    )

    # Arrival order across all conversations; recovery replays pending turns in this order.
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    conversation_id: Mapped[str] = mapped_column(String(128))
    turn_id: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    ts: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    analysis: Mapped[dict[str, Any] | None]
    actions: Mapped[list[Any] | None]
    analysis_seq: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("outcome IN ('accepted', 'dismissed', 'edited')", name="outcome"),
        _conversation_fk(),
        Index("ix_feedback_tenant_id_conversation_id", "tenant_id", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    conversation_id: Mapped[str] = mapped_column(String(128))
    suggestion_id: Mapped[str] = mapped_column(String(256), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    edited_text: Mapped[str | None] = mapped_column(Text)
    ts: Mapped[datetime]


class CustomerRow(Base):
    __tablename__ = "customers"

    tenant_id: Mapped[str] = _tenant()
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # CustomerProfile.model_dump(mode="json"): tier, opt_out_marketing, orders, region ...
    profile: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KbEntryRow(Base):
    __tablename__ = "kb_entries"
    __table_args__ = (Index("ix_kb_entries_tenant_id_status", "tenant_id", "status"),)

    tenant_id: Mapped[str] = _tenant()
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entry: Mapped[dict[str, Any]]  # KbEntry.model_dump(mode="json") of the current version
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class KbHistoryRow(Base):
    """Every saved version of every KB entry; append-only.

    Deliberately no foreign key to ``kb_entries``: history is the audit trail and must outlive
    whatever happens to the current row.
    """

    __tablename__ = "kb_history"

    tenant_id: Mapped[str] = _tenant()
    entry_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    saved_at: Mapped[datetime]


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # The worker's poll: pending events whose time has come, oldest first.
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    # Globally unique id sent to the CRM so it can drop duplicates: delivery is at-least-once.
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class ReplayRow(Base):
    __tablename__ = "replays"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        Index("ix_replays_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class QualityDefectRow(Base):
    """One confirmed defect per problem of a conversation (assist.insights.defects)."""

    __tablename__ = "quality_defects"
    __table_args__ = (
        UniqueConstraint("tenant_id", "conversation_id", "problem_id"),
        _conversation_fk(),
        # A group's window count and the SKU's history count (assist.insights.quality).
        Index("ix_quality_defects_tenant_id_sku_symptom_reported_at", "tenant_id", "sku", "symptom", "reported_at"),
        # min(reported_at): how much history the tenant's store has, read at every judgment.
        Index("ix_quality_defects_tenant_id_reported_at", "tenant_id", "reported_at"),
        CheckConstraint("status IN ('reported', 'filed', 'retracted')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    conversation_id: Mapped[str] = mapped_column(String(128))
    problem_id: Mapped[str] = mapped_column(String(128))
    turn_id: Mapped[str] = mapped_column(String(128))
    action_id: Mapped[str] = mapped_column(String(256))
    sku: Mapped[str | None] = mapped_column(String(128))
    batch: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str | None] = mapped_column(String(128))
    symptom: Mapped[str] = mapped_column(String(160))
    symptom_text: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    retracted_reason: Mapped[str | None] = mapped_column(String(16))
    reported_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class QualityAlertRow(Base):
    """A quality alert: open while its group's count is significantly above the baseline."""

    __tablename__ = "quality_alerts"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        Index("ix_quality_alerts_tenant_id_status_opened_at", "tenant_id", "status", "opened_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT)
    # The tenant's and group's key while the alert is open, NULL once closed: the unique constraint is what keeps
    # one open alert per group even when two replicas judge the same group at once (NULLs never collide).
    open_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    sku: Mapped[str] = mapped_column(String(128))
    batch: Mapped[str | None] = mapped_column(String(128))
    symptom: Mapped[str] = mapped_column(String(160))
    status: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    region: Mapped[str | None] = mapped_column(String(128))
    regions: Mapped[dict[str, Any]]
    conversation_ids: Mapped[list[Any]]
    symptom_text: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class TenantRow(Base):
    """A tenant other than ``default`` and the shop directory its KB, catalog and policy come from."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ApiKeyRow(Base):
    """An API key: only the SHA-256 of its secret is stored; the key id (public) is how it is found."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('console', 'crm', 'admin')", name="scope"),
        Index("ix_api_keys_tenant_id", "tenant_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
