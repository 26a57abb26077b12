"""CustomerRepo round trips on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from assist.store import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROFILE = {
    "id": "u1",
    "tier": "vip",
    "opt_out_marketing": False,
    "region": "浙江",
    "orders": [{"order_id": "o1", "sku": "DIAPER-L", "status": "delivered", "paid_at": "2025-11-20T10:00:00+00:00"}],
}


async def test_upsert_then_get_round_trips_the_profile(db: Database) -> None:
    async with db.transaction() as uow:
        created = await uow.customers.upsert("u1", PROFILE)
        assert await uow.customers.get("nobody") is None
    assert created.profile == PROFILE
    async with db.transaction() as uow:
        got = await uow.customers.get("u1")
    assert got is not None and got.profile == PROFILE and got.updated_at.tzinfo is not None


async def test_upsert_replaces_the_whole_profile(db: Database) -> None:
    async with db.transaction() as uow:
        first = await uow.customers.upsert("u1", PROFILE)
    async with db.transaction() as uow:
        second = await uow.customers.upsert("u1", {"id": "u1", "tier": "normal", "opt_out_marketing": True})
    assert second.profile == {"id": "u1", "tier": "normal", "opt_out_marketing": True}
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at
    async with db.transaction() as uow:
        assert [c.id for c in await uow.customers.list_customers()] == ["u1"]


async def test_pydantic_profiles_are_dumped_as_json(db: Database) -> None:
    class Profile(BaseModel):
        id: str
        tier: str = "normal"

    async with db.transaction() as uow:
        rec = await uow.customers.upsert("u2", Profile(id="u2"))
    assert rec.profile == {"id": "u2", "tier": "normal"}


async def test_concurrent_first_pushes_for_one_customer_do_not_conflict(db: Database) -> None:
    async def push(tier: str) -> None:
        async with db.transaction() as uow:
            await uow.customers.upsert("u3", {"id": "u3", "tier": tier})

    await asyncio.gather(*(push(t) for t in ["a", "b", "c", "d"]))
    async with db.transaction() as uow:
        got = await uow.customers.get("u3")
    assert got is not None and got.profile["tier"] in {"a", "b", "c", "d"}
