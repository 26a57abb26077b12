"""Tenant scoping of the store, the 0001 -> 0002 data migration, and the key registry (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from assist.errors import ConversationNotFound, KbEntryNotFound, NotFoundError, ReplayNotFound
from assist.migrations import upgrade_to_head
from assist.shop.models import KbEntry
from assist.store import Database
from assist.store.records import Scope
from assist.store.testing import temporary_database

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_same_ids_in_two_tenants_never_mix(db: Database) -> None:
    a, b = db.for_tenant("shop-a"), db.for_tenant("shop-b")
    for t, tier in ((a, "vip"), (b, "normal")):
        async with t.transaction() as uow:
            await uow.conversations.ensure("c1", customer_id="u1")
            await uow.conversations.insert_turn("c1", turn_id="t1", role="customer", text=f"{tier} 在吗")
            await uow.conversations.append_frame("c1", {"type": "ack"})
            await uow.customers.upsert("u1", {"id": "u1", "tier": tier})
            await uow.kb.create(KbEntry(id="k1", question=f"{tier}?", answer="a"))
    async with a.transaction() as uow:
        assert [t.text for t in await uow.conversations.turns("c1")] == ["vip 在吗"]
        assert (await uow.customers.get("u1")).profile["tier"] == "vip"  # type: ignore[union-attr]
        assert [c.id for c in await uow.conversations.by_customer("u1")] == ["c1"]
        assert (await uow.conversations.get("c1")).last_seq == 1  # seqs are per tenant's conversation
        assert (await uow.kb.get("k1")).question == "vip?"
        assert [e.id for e in await uow.kb.list_entries()] == ["k1"]
    async with db.for_tenant("shop-c").transaction() as uow:
        assert await uow.conversations.find("c1") is None
        assert await uow.customers.get("u1") is None
        with pytest.raises(KbEntryNotFound):
            await uow.kb.history("k1")
        replay = await uow.replays.create(total=1)
    # One transaction each: on PostgreSQL a failed statement aborts the rest of its transaction.
    with pytest.raises(ConversationNotFound):
        async with db.for_tenant("shop-c").transaction() as uow:
            await uow.conversations.insert_turn("c1", turn_id="t2", role="customer", text="x")
    with pytest.raises(ConversationNotFound):
        async with db.for_tenant("shop-c").transaction() as uow:
            await uow.conversations.save_state("c1", {})
    async with a.transaction() as uow:
        with pytest.raises(ReplayNotFound):
            await uow.replays.get(replay.id)
        assert await uow.replays.list_replays() == []


async def test_keys_are_stored_hashed_listed_and_revoked(db: Database) -> None:
    async with db.transaction() as uow:
        assert await uow.keys.count_active() == 0
        await uow.keys.add("0123456789ab", tenant="shop-a", scope=Scope.crm, secret_sha256="f" * 64, label="crm")
        await uow.tenants.add("shop-a", shop_dir="/srv/shop-a")
    async with db.transaction() as uow:
        found = await uow.keys.secret_hash("0123456789ab")
        assert found is not None and found[1] == "f" * 64 and found[0].scope is Scope.crm
        assert [k.id for k in await uow.keys.list_keys(tenant="shop-a")] == ["0123456789ab"]
        assert await uow.keys.list_keys(tenant="other") == []
        assert (await uow.keys.revoke("0123456789ab")).revoked_at is not None
        assert await uow.keys.secret_hash("0123456789ab") is None
        assert await uow.keys.count_active() == 0
        with pytest.raises(NotFoundError):
            await uow.keys.revoke("nope")
        assert [t.id for t in await uow.tenants.list_tenants()] == ["shop-a"]


async def test_rows_from_before_tenants_migrate_to_default(backend: str, tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None) if backend == "sqlite" else datetime(2026, 1, 1,
                                                                                                      tzinfo=UTC)
    async with temporary_database(backend, tmp_path, migrate=False) as db:  # type: ignore[arg-type]
        await upgrade_to_head(db.engine, revision="0001")
        async with db.engine.begin() as conn:
            p = {"now": now, "j": "{}"}
            await conn.execute(text("INSERT INTO conversations (id, customer_id, state, last_seq, created_at, "
                                    "updated_at) VALUES ('c1', 'u1', :j, 1, :now, :now)"), p)
            await conn.execute(text("INSERT INTO frames (conversation_id, seq, frame, created_at) "
                                    "VALUES ('c1', 1, :j, :now)"), p)
            await conn.execute(text("INSERT INTO turns (conversation_id, turn_id, role, text, ts, status, created_at)"
                                    " VALUES ('c1', 't1', 'customer', '在吗', :now, 'received', :now)"), p)
            await conn.execute(text("INSERT INTO customers (id, profile, created_at, updated_at) "
                                    "VALUES ('u1', :j, :now, :now)"), p)
        await db.migrate()
        async with db.transaction() as uow:  # tenant "default"
            assert (await uow.conversations.get("c1")).customer_id == "u1"
            assert len(await uow.conversations.frames_after("c1", 0)) == 1
            assert [t.turn_id for t in await uow.conversations.pending_turns()] == ["t1"]
            assert await uow.customers.get("u1") is not None
