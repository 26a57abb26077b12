"""Persistence: the only code in assist that talks SQL (SQLite embedded, PostgreSQL for replicas).

Typical use::

    db = Database.open(settings.effective_database_url)
    await db.migrate()
    async with db.transaction() as uow:                # commits when the block exits
        await uow.conversations.ensure(cid, initial_state=new_state(cid))
        turn, created = await uow.conversations.insert_turn(cid, turn_id=..., role=..., text=...)
    # only now send the ack

Repositories (``uow.conversations``, ``.customers``, ``.kb``, ``.outbox``, ``.replays``, ``.quality``) can
also be built from any ``AsyncSession``; they return values from ``assist.store.records`` (or
``assist.shop.KbEntry``), never ORM rows, and raise ``assist.errors`` classes.
"""

from __future__ import annotations

from assist.store.conversations import ConversationRepo
from assist.store.customers import CustomerRepo
from assist.store.db import Database, create_engine, normalise_url
from assist.store.kb import KbRepo
from assist.store.outbox import OutboxRepo
from assist.store.records import (
    ConversationRecord,
    CustomerRecord,
    FeedbackOutcome,
    FeedbackRecord,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    ReplayRecord,
    ReplayStatus,
    TurnRecord,
    TurnStatus,
)
from assist.store.replays import ReplayRepo
from assist.store.unit import UnitOfWork

__all__ = [
    "ConversationRecord",
    "ConversationRepo",
    "CustomerRecord",
    "CustomerRepo",
    "Database",
    "FeedbackOutcome",
    "FeedbackRecord",
    "KbRepo",
    "OutboxEvent",
    "OutboxRepo",
    "OutboxStatus",
    "OutboxTopic",
    "ReplayRecord",
    "ReplayRepo",
    "ReplayStatus",
    "TurnRecord",
    "TurnStatus",
    "UnitOfWork",
    "create_engine",
    "normalise_url",
]
