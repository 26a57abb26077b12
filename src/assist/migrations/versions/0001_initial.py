"""Initial schema: conversations, frames, turns, feedback, customers, KB + history, outbox, replays.

Revision ID: 0001
Revises:
Create Date: 2025-11-24

Written by hand rather than from the models so that later model edits cannot change what
this revision creates; tests/store/test_migrations.py checks that head matches the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=True),
        sa.Column("state", _json, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_customer_id"), "conversations", ["customer_id"])

    op.create_table(
        "frames",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("frame", _json, nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name=op.f("fk_frames_conversation_id_conversations")),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name=op.f("pk_frames")),
    )

    op.create_table(
        "turns",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("turn_id", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _ts("ts"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("analysis", _json, nullable=True),
        sa.Column("actions", _json, nullable=True),
        sa.Column("analysis_seq", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("processed_at", nullable=True),
        sa.CheckConstraint("status IN ('received', 'processed', 'failed')", name=op.f("ck_turns_status")),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name=op.f("fk_turns_conversation_id_conversations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turns")),
        sa.UniqueConstraint("conversation_id", "turn_id", name=op.f("uq_turns_conversation_id_turn_id")),
    )
    op.create_index("ix_turns_status_id", "turns", ["status", "id"])

    op.create_table(
        "feedback",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("suggestion_id", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("edited_text", sa.Text(), nullable=True),
        _ts("ts"),
        sa.CheckConstraint("outcome IN ('accepted', 'dismissed', 'edited')", name=op.f("ck_feedback_outcome")),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name=op.f("fk_feedback_conversation_id_conversations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_conversation_id"), "feedback", ["conversation_id"])
    op.create_index(op.f("ix_feedback_suggestion_id"), "feedback", ["suggestion_id"])

    op.create_table(
        "customers",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("profile", _json, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )

    op.create_table(
        "kb_entries",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("entry", _json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_entries")),
    )
    op.create_index(op.f("ix_kb_entries_status"), "kb_entries", ["status"])

    op.create_table(
        "kb_history",
        sa.Column("entry_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entry", _json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("saved_at"),
        sa.PrimaryKeyConstraint("entry_id", "version", name=op.f("pk_kb_history")),
    )

    op.create_table(
        "outbox",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("payload", _json, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("delivered_at", nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f("ck_outbox_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])

    op.create_table(
        "replays",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("params", _json, nullable=False),
        sa.Column("report", _json, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("finished_at", nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_replays_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replays")),
    )


def downgrade() -> None:
    for table in ("replays", "outbox", "kb_history", "kb_entries", "customers", "feedback", "turns",
                  "frames", "conversations"):
        op.drop_table(table)
