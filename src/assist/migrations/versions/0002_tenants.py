"""Tenants: a ``tenant_id`` on every tenant-owned row, keys scoped by it; tenant and API key tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Existing rows belong to tenant ``default`` (the column's server default). Conversation ids,
customer ids and KB entry ids are unique per tenant from here on, so the primary keys become
``(tenant_id, id)`` and the children of a conversation reference it by both columns.

Order matters on SQLite, where batch mode rebuilds a table (copy, DROP, rename): dropping
``conversations`` while ``frames``/``turns``/``feedback`` still reference it with ON DELETE
CASCADE would delete every child row. So the children lose their foreign key first, the parent
gets its new key, and only then do the children get the composite foreign key back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHILDREN = ("frames", "turns", "feedback")


def _tenant_column() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(64), nullable=False, server_default="default")


def _fk_name(child: str) -> str:
    # The models' naming convention names a composite foreign key after its first column.
    return f"fk_{child}_tenant_id_conversations"


def _old_fk_name(child: str) -> str:
    return f"fk_{child}_conversation_id_conversations"


def upgrade() -> None:
    for child in _CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_constraint(_old_fk_name(child), type_="foreignkey")
            batch.add_column(_tenant_column())

    op.drop_index("ix_conversations_customer_id", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(_tenant_column())
        batch.drop_constraint("pk_conversations", type_="primary")
        batch.create_primary_key("pk_conversations", ["tenant_id", "id"])
    op.create_index("ix_conversations_tenant_id_customer_id", "conversations", ["tenant_id", "customer_id"])

    with op.batch_alter_table("frames") as batch:
        batch.drop_constraint("pk_frames", type_="primary")
        batch.create_primary_key("pk_frames", ["tenant_id", "conversation_id", "seq"])
    with op.batch_alter_table("turns") as batch:
        batch.drop_constraint("uq_turns_conversation_id_turn_id", type_="unique")
        batch.create_unique_constraint("uq_turns_tenant_id_conversation_id_turn_id",
                                       ["tenant_id", "conversation_id", "turn_id"])
    op.drop_index("ix_feedback_conversation_id", table_name="feedback")
    op.create_index("ix_feedback_tenant_id_conversation_id", "feedback", ["tenant_id", "conversation_id"])
    for child in _CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.create_foreign_key(_fk_name(child), "conversations", ["tenant_id", "conversation_id"],
                                     ["tenant_id", "id"], ondelete="CASCADE")

    for table, key in (("customers", ["tenant_id", "id"]), ("kb_entries", ["tenant_id", "id"]),
                       ("kb_history", ["tenant_id", "entry_id", "version"])):
        with op.batch_alter_table(table) as batch:
            batch.add_column(_tenant_column())
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)
    op.drop_index("ix_kb_entries_status", table_name="kb_entries")
    op.create_index("ix_kb_entries_tenant_id_status", "kb_entries", ["tenant_id", "status"])

    with op.batch_alter_table("outbox") as batch:
        batch.add_column(_tenant_column())
    with op.batch_alter_table("replays") as batch:
        batch.add_column(_tenant_column())
    op.create_index("ix_replays_tenant_id_created_at", "replays", ["tenant_id", "created_at"])

    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("shop_dir", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('console', 'crm', 'admin')", name=op.f("ck_api_keys_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])


def downgrade() -> None:
    # Only lossless while a single tenant exists: other tenants' rows would collide on the old keys.
    op.drop_table("api_keys")
    op.drop_table("tenants")
    op.drop_index("ix_replays_tenant_id_created_at", table_name="replays")
    for table in ("replays", "outbox"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant_id")
    op.drop_index("ix_kb_entries_tenant_id_status", table_name="kb_entries")
    op.create_index("ix_kb_entries_status", "kb_entries", ["status"])
    for table, key in (("customers", ["id"]), ("kb_entries", ["id"]), ("kb_history", ["entry_id", "version"])):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)
            batch.drop_column("tenant_id")
    for child in _CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_constraint(_fk_name(child), type_="foreignkey")
    op.drop_index("ix_feedback_tenant_id_conversation_id", table_name="feedback")
    op.create_index("ix_feedback_conversation_id", "feedback", ["conversation_id"])
    with op.batch_alter_table("turns") as batch:
        batch.drop_constraint("uq_turns_tenant_id_conversation_id_turn_id", type_="unique")
        batch.create_unique_constraint("uq_turns_conversation_id_turn_id", ["conversation_id", "turn_id"])
    with op.batch_alter_table("frames") as batch:
        batch.drop_constraint("pk_frames", type_="primary")
        batch.create_primary_key("pk_frames", ["conversation_id", "seq"])
    op.drop_index("ix_conversations_tenant_id_customer_id", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint("pk_conversations", type_="primary")
        batch.create_primary_key("pk_conversations", ["id"])
        batch.drop_column("tenant_id")
    op.create_index("ix_conversations_customer_id", "conversations", ["customer_id"])
    for child in _CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_column("tenant_id")
            batch.create_foreign_key(_old_fk_name(child), "conversations", ["conversation_id"], ["id"],
                                     ondelete="CASCADE")
