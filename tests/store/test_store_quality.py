"""Defects and quality alerts in the store (assist.store.quality), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from assist.insights.defects import DefectReport, RetractReason
from assist.insights.quality import AlertRule, GroupKey, GroupStats, assess
from assist.store import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEY = GroupKey("S1", "B1", "kb:x")


def _report(cid: str, at: datetime, *, batch: str | None = "B1", action: str = "a1", region: str | None = "上海"
            ) -> DefectReport:
    return DefectReport(conversation_id=cid, problem_id="p1", turn_id="t1", action_id=action, sku="S1",
                        batch=batch, region=region, symptom="kb:x", symptom_text="不出声", kind="failed_guidance", at=at)


async def test_one_defect_per_problem_a_repeat_fills_it_in(db: Database) -> None:
    async with db.transaction() as uow:
        await uow.conversations.ensure("c1")
        touched, created = await uow.quality.record(_report("c1", T0, batch=None))
        assert created and touched == {GroupKey("S1", None, "kb:x")}
        touched, created = await uow.quality.record(_report("c1", T0 + timedelta(hours=1), action="a2", region=None))
        # the batch given later moves the defect to its group: both groups must be judged again
        assert not created and touched == {GroupKey("S1", None, "kb:x"), KEY}
        [d] = await uow.quality.defects("c1")
    assert (d.batch, d.region, d.action_id, d.reported_at, d.status) == ("B1", "上海", "a2", T0, "reported")


async def test_counts_skip_retracted_defects_and_filing_does_not_undo_a_retraction(db: Database) -> None:
    async with db.transaction() as uow:
        for i in range(3):
            await uow.conversations.ensure(f"c{i}")
            await uow.quality.record(_report(f"c{i}", T0 + timedelta(days=i)))
        assert await uow.quality.retract("c1", reason=RetractReason.usage, problem_id="p1") == ({KEY}, 1)
        assert await uow.quality.retract("c1", reason=RetractReason.usage, problem_id="p1") == (set(), 0)
        assert await uow.quality.file("c1", action_id="a1") == (set(), 0)
        assert await uow.quality.file("c2", action_id="a1") == ({KEY}, 1)
        window = await uow.quality.window(KEY, T0 - timedelta(days=1), T0 + timedelta(days=5))
        assert sorted(p.conversation_id for p in window) == ["c0", "c2"]
        assert await uow.quality.history_count("S1", "kb:x", T0 - timedelta(days=1), T0 + timedelta(days=1)) == 1
        assert await uow.quality.window_counts(T0 - timedelta(days=1), T0 + timedelta(days=5)) == {KEY: 2}
        assert await uow.quality.first_reported_at() == T0
        [d] = await uow.quality.defects("c1")
    assert (d.status, d.retracted_reason) == ("retracted", "usage")


async def test_one_open_alert_per_group_and_a_new_one_after_closing(db: Database) -> None:
    a = assess(AlertRule(), GroupStats(KEY, [], 0, 0.0))
    async with db.transaction() as uow:
        first = await uow.quality.raise_alert(KEY, a, now=T0)
        assert first is not None and first.status == "open"
        assert await uow.quality.raise_alert(KEY, a, now=T0) is None  # another writer's race loses
        assert (await uow.quality.open_alert(KEY)).id == first.id  # type: ignore[union-attr]
        closed = await uow.quality.update_alert(first.id, a, now=T0 + timedelta(days=1), close=True)
        assert closed.status == "closed" and closed.closed_at == T0 + timedelta(days=1)
        assert await uow.quality.open_alert(KEY) is None and await uow.quality.open_groups() == set()
        again = await uow.quality.raise_alert(KEY, a, now=T0 + timedelta(days=2))
        assert again is not None and again.id != first.id
        assert [x.id for x in await uow.quality.alerts(status=None)] == [again.id, first.id]
        assert [x.id for x in await uow.quality.alerts(status="closed", sku="S1", batch="B1")] == [first.id]


async def test_defects_and_alerts_belong_to_their_tenant(db: Database) -> None:
    # the same conversation id and group in two tenants: counts, alerts and dedupe stay apart
    a = assess(AlertRule(), GroupStats(KEY, [], 0, 0.0))
    async with db.transaction(tenant="t-a") as uow:
        await uow.conversations.ensure("same")
        await uow.quality.record(_report("same", T0))
        assert await uow.quality.raise_alert(KEY, a, now=T0) is not None
    async with db.transaction(tenant="t-b") as uow:
        await uow.conversations.ensure("same")
        assert await uow.quality.defects("same") == []
        assert await uow.quality.window_counts(T0 - timedelta(days=1), T0 + timedelta(days=1)) == {}
        assert await uow.quality.alerts(status=None) == []
        assert await uow.quality.open_alert(KEY) is None
        assert await uow.quality.raise_alert(KEY, a, now=T0) is not None  # its own, not a lost race
    async with db.transaction(tenant="t-a") as uow:
        assert [x.sku for x in await uow.quality.alerts()] == ["S1"]
        assert len(await uow.quality.defects("same")) == 1
