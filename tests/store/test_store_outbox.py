"""OutboxRepo on SQLite and PostgreSQL: enqueue, lease, retry bookkeeping, dead letters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from assist.errors import NotFoundError
from assist.store import Database, OutboxStatus, OutboxTopic

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2025, 11, 24, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


async def test_enqueue_and_claim_round_trip(db: Database) -> None:
    payload = {"conversation_id": "c1", "reason": "12315 投诉", "sku": "SPK-01"}
    async with db.transaction() as uow:
        ev = await uow.outbox.enqueue(OutboxTopic.escalation_created, payload, now=T0)
    assert ev.status is OutboxStatus.pending and ev.attempts == 0 and ev.next_attempt_at == T0
    async with db.transaction() as uow:
        claimed = await uow.outbox.claim_due(now=T0, lease=LEASE)
    assert [c.event_id for c in claimed] == [ev.event_id]
    assert claimed[0].topic == "escalation.created" and claimed[0].payload == payload
    assert claimed[0].attempts == 1 and claimed[0].next_attempt_at == T0 + LEASE


async def test_a_leased_event_is_not_claimed_again_until_the_lease_expires(db: Database) -> None:
    async with db.transaction() as uow:
        await uow.outbox.enqueue("suggestion.accepted", {"suggestion_id": "s1"}, now=T0)
        await uow.outbox.enqueue("suggestion.accepted", {"suggestion_id": "s2"}, now=T0 + timedelta(seconds=10))
    async with db.transaction() as uow:
        assert len(await uow.outbox.claim_due(now=T0)) == 1, "s2 is not due yet"
        assert await uow.outbox.claim_due(now=T0 + timedelta(seconds=5)) == []
        assert [e.payload["suggestion_id"] for e in await uow.outbox.claim_due(now=T0 + timedelta(seconds=30))] == [
            "s2"
        ]
    async with db.transaction() as uow:
        # The worker that took s1 died without reporting: after the lease it is due again.
        again = await uow.outbox.claim_due(now=T0 + LEASE + timedelta(seconds=1))
    assert [(e.payload["suggestion_id"], e.attempts) for e in again] == [("s1", 2)]


async def test_claims_respect_limit_and_age_order(db: Database) -> None:
    async with db.transaction() as uow:
        for i in range(5):
            await uow.outbox.enqueue("quality_alert.raised", {"i": i}, now=T0 + timedelta(seconds=i))
    async with db.transaction() as uow:
        first = await uow.outbox.claim_due(now=T0 + timedelta(minutes=1), limit=3)
        rest = await uow.outbox.claim_due(now=T0 + timedelta(minutes=1), limit=3)
    assert [e.payload["i"] for e in first] == [0, 1, 2]
    assert [e.payload["i"] for e in rest] == [3, 4]


async def test_concurrent_claimers_get_disjoint_batches(db: Database) -> None:
    async with db.transaction() as uow:
        for i in range(12):
            await uow.outbox.enqueue("suggestion.accepted", {"i": i}, now=T0)

    async def claim() -> list[int]:
        async with db.transaction() as uow:
            return [e.id for e in await uow.outbox.claim_due(now=T0, limit=4)]

    batches = await asyncio.gather(*(claim() for _ in range(3)))
    ids = [i for b in batches for i in b]
    assert len(ids) == len(set(ids)) == 12


async def test_delivered_failed_dead_and_requeued(db: Database) -> None:
    async with db.transaction() as uow:
        a = await uow.outbox.enqueue("escalation.created", {"n": "a"}, now=T0)
        b = await uow.outbox.enqueue("escalation.created", {"n": "b"}, now=T0)
        c = await uow.outbox.enqueue("escalation.created", {"n": "c"}, now=T0)
        await uow.outbox.claim_due(now=T0)
    async with db.transaction() as uow:
        await uow.outbox.mark_delivered(a.id, now=T0 + timedelta(seconds=1))
        await uow.outbox.mark_failed(b.id, "HTTP 503", retry_at=T0 + timedelta(seconds=4))
        await uow.outbox.mark_failed(c.id, "HTTP 500", retry_at=None)
    async with db.transaction() as uow:
        got_a, got_b, got_c = [await uow.outbox.get(x.id) for x in (a, b, c)]
        counts = await uow.outbox.counts()
        dead = await uow.outbox.list_events(status=OutboxStatus.dead)
        due = await uow.outbox.claim_due(now=T0 + timedelta(seconds=5))
    assert got_a.status is OutboxStatus.delivered and got_a.delivered_at == T0 + timedelta(seconds=1)
    assert (got_b.status, got_b.last_error, got_b.next_attempt_at) == (
        OutboxStatus.pending, "HTTP 503", T0 + timedelta(seconds=4))
    assert got_c.status is OutboxStatus.dead and got_c.last_error == "HTTP 500"
    assert counts == {OutboxStatus.pending: 1, OutboxStatus.delivered: 1, OutboxStatus.dead: 1}
    assert [e.id for e in dead] == [c.id]
    assert [e.id for e in due] == [b.id]
    async with db.transaction() as uow:
        await uow.outbox.requeue(c.id, now=T0)
        revived = await uow.outbox.get(c.id)
    assert (revived.status, revived.attempts) == (OutboxStatus.pending, 0)
    with pytest.raises(NotFoundError):
        async with db.transaction() as uow:
            await uow.outbox.mark_delivered(10**9)


async def test_enqueue_rolls_back_with_the_change_that_caused_it(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as uow:
            await uow.outbox.enqueue("escalation.created", {"n": 1})
            raise RuntimeError("the escalation itself failed")
    async with db.transaction() as uow:
        assert await uow.outbox.list_events() == []
