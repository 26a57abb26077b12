"""Quality early warning: confirmed defects and quality alerts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Written by hand, like 0001; tests/store/test_store_migrations.py checks that head matches the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "quality_defects",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("problem_id", sa.String(128), nullable=False),
        sa.Column("turn_id", sa.String(128), nullable=False),
        sa.Column("action_id", sa.String(256), nullable=False),
        sa.Column("sku", sa.String(128), nullable=True),
        sa.Column("batch", sa.String(128), nullable=True),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("symptom", sa.String(160), nullable=False),
        sa.Column("symptom_text", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retracted_reason", sa.String(16), nullable=True),
        _ts("reported_at"),
        _ts("updated_at"),
        sa.CheckConstraint("status IN ('reported', 'filed', 'retracted')", name=op.f("ck_quality_defects_status")),
        sa.ForeignKeyConstraint(["tenant_id", "conversation_id"], ["conversations.tenant_id", "conversations.id"],
                                ondelete="CASCADE", name=op.f("fk_quality_defects_tenant_id_conversations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_defects")),
        sa.UniqueConstraint("tenant_id", "conversation_id", "problem_id",
                            name=op.f("uq_quality_defects_tenant_id_conversation_id_problem_id")),
    )
    op.create_index("ix_quality_defects_tenant_id_sku_symptom_reported_at", "quality_defects",
                    ["tenant_id", "sku", "symptom", "reported_at"])
    op.create_index("ix_quality_defects_tenant_id_reported_at", "quality_defects", ["tenant_id", "reported_at"])

    op.create_table(
        "quality_alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), server_default="default", nullable=False),
        sa.Column("open_key", sa.String(512), nullable=True),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("batch", sa.String(128), nullable=True),
        sa.Column("symptom", sa.String(160), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("regions", _json, nullable=False),
        sa.Column("conversation_ids", _json, nullable=False),
        sa.Column("symptom_text", sa.Text(), nullable=False),
        _ts("opened_at"),
        _ts("updated_at"),
        _ts("closed_at", nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_quality_alerts_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_quality_alerts_open_key")),
    )
    op.create_index("ix_quality_alerts_tenant_id_status_opened_at", "quality_alerts", ["tenant_id", "status", "opened_at"])


def downgrade() -> None:
    op.drop_table("quality_alerts")
    op.drop_table("quality_defects")
