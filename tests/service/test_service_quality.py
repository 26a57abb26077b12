"""The quality early warning in the service (assist.service.quality) on a real SQLite store, with
synthetic defects fed through the same calls the conversation service makes."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service_build import action_types, hello, turn
from starlette.testclient import TestClient

from assist.insights.quality import AlertRule, GroupKey
from assist.policy.actions import Action, ActionType
from assist.service.metrics import Metrics
from assist.service.quality import QualityMonitor
from assist.state import ConversationState, Problem, Suggestion
from assist.store import Database
from assist.store.testing import temporary_database
from assist.types import Intent, Outcome

# The async tests share the session's event loop with the async fixtures (asyncio_default_fixture_loop_scope).
_aio = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with temporary_database("sqlite", tmp_path) as d:
        yield d


def _monitor(db: Database, **rule: float) -> QualityMonitor:
    return QualityMonitor(db=db, rule=AlertRule(**rule), metrics=Metrics(), webhooks=True)  # type: ignore[arg-type]


def _state(cid: str, **problem: object) -> ConversationState:
    p = Problem(id=f"{cid}:t1", text="不出热风", family="product", intent=Intent.product_defect,
                intents=[Intent.product_defect], kb_ids=["kb-nohot"], answered=True, **problem)  # type: ignore[arg-type]
    return ConversationState(conversation_id=cid, problem=p)


async def _report(mon: QualityMonitor, cid: str, at: datetime, *, sku: str = "HD-01", batch: str = "B7",
                  region: str = "浙江杭州", judge: bool = True) -> None:
    """A customer turn on which the policy raised a quality report, as ConversationService stores it."""
    action = Action(id=f"{cid}:t2:quality_report:0", type=ActionType.quality_report, sku=sku,
                    details={"kind": "failed_guidance", "sku": sku, "batch": batch, "region": region,
                             "symptom": "吹风机不出热风 / 试过了还是不行"})
    async with mon.db.transaction() as uow:
        await uow.conversations.ensure(cid)
        recorded = await mon.record_turn(uow, conversation_id=cid, turn_id="t2", at=at, before=_state(cid),
                                         after=_state(cid, defect=True, defect_reported=True), actions=[action],
                                         intent="product_defect")
    keys = mon.committed(recorded)
    if judge:
        await mon.evaluate(keys, now=at)


async def _solved(mon: QualityMonitor, cid: str, at: datetime) -> None:
    """The customer's next turn: "哦 开关没拨到热风档 好了 谢谢" (no remedy asked for)."""
    async with mon.db.transaction() as uow:
        recorded = await mon.record_turn(
            uow, conversation_id=cid, turn_id="t3", at=at, before=_state(cid, defect=True, defect_reported=True),
            after=_state(cid, defect=True, defect_reported=True, resolved=True, resolved_by="customer"),
            actions=[], intent="greeting_thanks")
    await mon.evaluate(mon.committed(recorded), now=at)


async def _outbox(db: Database) -> list[str]:
    async with db.transaction() as uow:
        return [e.topic for e in await uow.outbox.claim_due(now=T0 + timedelta(days=10_000), limit=1000)]


@_aio
async def test_a_burst_for_one_sku_and_batch_raises_exactly_one_alert_and_closes_when_it_subsides(
        db: Database) -> None:
    mon = _monitor(db)
    rng = np.random.default_rng(7)
    # History: the SKU's other batches had a defect of this kind now and then (3 in 90 days).
    for i, day in enumerate((5, 40, 70)):
        await _report(mon, f"h{i}", T0 + timedelta(days=day), batch=f"B{i}")
    burst_start = T0 + timedelta(days=100)
    for i, hours in enumerate(sorted(rng.uniform(0, 72, size=6))):
        await _report(mon, f"b{i}", burst_start + timedelta(hours=float(hours)), region="浙江杭州" if i % 3 else "上海")
    [alert] = await mon.alerts(status=None)
    assert (alert.sku, alert.batch, alert.symptom, alert.status) == ("HD-01", "B7", "kb:kb-nohot", "open")
    assert alert.count == 6 and alert.conversation_ids == [f"b{i}" for i in range(6)]
    assert alert.region == "浙江杭州" and alert.regions == {"上海": 2, "浙江杭州": 4}
    # baseline: 3 defects in the days observed before the window (from the first defect), scaled to 14 days
    observed = (alert.updated_at - timedelta(days=14) - (T0 + timedelta(days=5))) / timedelta(days=1)
    assert alert.baseline == pytest.approx(3 / observed * 14, rel=1e-4) and alert.p_value < 0.01
    assert mon.metrics.value("assist_quality_alerts_total", event="raised") == 1
    # days later the figures move (more history observed) but the alert stays the one open alert
    assert {(u.id, u.status) for u in await mon.sweep(now=burst_start + timedelta(days=5))} <= {(alert.id, "open")}
    assert [a.id for a in await mon.alerts()] == [alert.id]
    closed = await mon.sweep(now=burst_start + timedelta(days=20))
    assert [(c.id, c.status, c.count) for c in closed] == [(alert.id, "closed", 0)]
    assert await mon.alerts() == []
    assert await _outbox(db) == ["quality_alert.raised", "quality_alert.closed"]


@_aio
async def test_noise_at_the_baseline_rate_raises_no_more_than_the_nominal_false_positive_rate(
        db: Database) -> None:
    # Six SKUs with defects at a steady 0.15 a day (2.1 per 14-day window), a new batch every 30 days.
    # The first 90 days are history; then every defect is judged as it is recorded, plus a weekly sweep.
    rule = AlertRule()
    mon = _monitor(db)
    judged = 0
    evaluate = mon.evaluate

    async def counting(keys: Iterable[GroupKey], now: datetime | None = None) -> list[Any]:
        nonlocal judged
        keys = set(keys)
        judged += len(keys)
        return await evaluate(keys, now)

    mon.evaluate = counting  # type: ignore[method-assign]
    rng = np.random.default_rng(20261204)
    events = sorted(
        (T0 + timedelta(days=day, hours=float(rng.uniform(0, 24))), sku)
        for sku in (f"N{i}" for i in range(6)) for day in range(270) for _ in range(int(rng.poisson(0.15)))
    )
    live_from = T0 + timedelta(days=90)
    windows: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    next_sweep = live_from
    for n, (at, sku) in enumerate(events):
        batch = f"B{(at - T0).days // 30}"
        windows[(sku, batch)].append(at)
        while at >= next_sweep:
            await mon.sweep(now=next_sweep)
            next_sweep += timedelta(days=7)
        await _report(mon, f"n{n}", at, sku=sku, batch=batch, judge=at >= live_from)
    raised = await mon.alerts(status=None)
    # Every judgment of a group is a test at level alpha (the windows overlap, so they are far from
    # independent and the expected count of false alerts is well under alpha x judgments).
    assert judged > 150
    assert len(raised) <= rule.alpha * judged, (len(raised), judged)
    # Control: the same noise breaks a rule that ignores the baseline ("3 in 14 days") many times over,
    # so the test above passes because of the baseline, not because the noise is too thin to matter.
    naive = sum(1 for times in windows.values() for t in times
                if t >= live_from and sum(t - timedelta(days=14) < u <= t for u in times) >= rule.min_count)
    assert naive >= 20, naive


@_aio
async def test_usage_problems_with_the_same_symptom_raise_none(db: Database) -> None:
    mon = _monitor(db)
    for i in range(5):  # each customer finds the heat switch after the report was raised
        at = T0 + timedelta(hours=6 * i)
        await _report(mon, f"u{i}", at)
        await _solved(mon, f"u{i}", at + timedelta(minutes=5))
    # two real defects of the same kind are still not three
    await _report(mon, "d1", T0 + timedelta(days=2))
    await _report(mon, "d2", T0 + timedelta(days=2, hours=1))
    assert await mon.alerts(status=None) == []
    assert mon.metrics.value("assist_quality_defects_total", event="retracted") == 5
    async with db.transaction() as uow:
        [d] = await uow.quality.defects("u0")
    assert (d.status, d.retracted_reason) == ("retracted", "usage")


@_aio
async def test_a_dismissed_report_stops_counting_and_closes_the_alert(db: Database) -> None:
    mon = _monitor(db)
    for i in range(3):
        await _report(mon, f"c{i}", T0 + timedelta(hours=i))
    [alert] = await mon.alerts()
    sid = "c1:t2:quality_report:0"
    state = _state("c1", defect=True, defect_reported=True, report_id=sid, report_handled=True)
    state = state.model_copy(update={"suggestions": {sid: Suggestion(id=sid, type="quality_report", status="dismissed")}})
    async with db.transaction() as uow:
        recorded = await mon.record_feedback(uow, conversation_id="c1", suggestion_id=sid,
                                             outcome=Outcome.dismissed, state=state)
    assert recorded.retracted == 1
    [closed] = await mon.evaluate(mon.committed(recorded), now=T0 + timedelta(hours=3))
    assert (closed.id, closed.status, closed.count, closed.conversation_ids) == (alert.id, "closed", 2, ["c0", "c2"])


def test_three_customers_reporting_one_batch_defect_raise_one_alert_through_the_service(client: TestClient) -> None:
    """End to end with the real models: three conversations about the same earbuds batch going quiet
    after the volume guidance -> one open alert on the REST endpoint, and on /metrics."""
    paid = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    regions = ["浙江杭州", "浙江杭州", "江苏南京"]
    for i, region in enumerate(regions):
        customer = {"id": f"qe-u{i}", "tier": "normal", "region": region, "orders": [
            {"order_id": f"qe-o{i}", "sku": "SJ-EP-001", "status": "delivered", "paid_at": paid, "batch": "B2411",
             "region": region}]}
        with client.websocket_connect("/v1/ws") as ws:
            hello(ws, f"qe-c{i}", customer=customer)
            _, first = turn(ws, "t1", "蓝牙耳机声音太小了")
            assert "quality_report" not in action_types(first), first
            turn(ws, "t2", "亲，您先把手机媒体音量和耳机音量都调到最大试试～", role="agent")
            _, second = turn(ws, "t3", "按你说的都调了，还是很小声")
            assert "quality_report" in action_types(second), second
            if i == 0:  # the agent files the first report: it keeps counting
                report = next(a for a in second["actions"] if a["type"] == "quality_report")
                r = client.post(f"/v1/conversations/qe-c{i}/feedback",
                                json={"suggestion_id": report["id"], "outcome": "accepted"})
                assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while True:  # judged after the turn's commit, off its path
        alerts = client.get("/v1/insights/quality-alerts").json()["alerts"]
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [alert] = alerts
    assert (alert["sku"], alert["batch"], alert["region"], alert["count"]) == ("SJ-EP-001", "B2411", "浙江杭州", 3)
    assert alert["symptom"] == "kb:sj-earbuds-volume-low" and alert["baseline"] == 0.2
    assert alert["conversation_ids"] == ["qe-c0", "qe-c1", "qe-c2"] and alert["p_value"] < 0.01
    assert alert["regions"] == {"江苏南京": 1, "浙江杭州": 2} and "小声" in alert["symptom_text"]
    assert client.get("/v1/insights/quality-alerts", params={"sku": "OTHER"}).json() == {"alerts": []}
    assert client.get("/v1/insights/quality-alerts", params={"limit": 0}).status_code == 422
    metrics = client.get("/metrics").text
    assert 'assist_quality_alerts_total{event="raised"} 1.0' in metrics
    assert 'assist_quality_defects_total{event="recorded"} 3.0' in metrics
    assert 'assist_suggestions_shown_total{type="quality_report"} 3.0' in metrics
    assert 'assist_suggestion_feedback_total{outcome="accepted",type="quality_report"} 1.0' in metrics
