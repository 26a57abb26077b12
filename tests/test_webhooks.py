"""Outbound webhooks: signing, backoff, and the OutboxWorker against a fake CRM (httpx.MockTransport).

The CRM is the one true external edge, so it is the only thing faked; the outbox is the real
store on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from assist.service.metrics import Metrics
from assist.store import Database, OutboxStatus, OutboxTopic
from assist.store.testing import CleanDatabases, drop_schemas, pg_unreachable_reason
from assist.webhooks import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOPIC_HEADER,
    OutboxWorker,
    RetryPolicy,
    sign,
    verify_signature,
)

SECRET = "s3cret-for-tests"
URL = "https://crm.example.test/hooks/assist"
T0 = datetime(2025, 11, 24, 12, 0, tzinfo=UTC)
on_session_loop = pytest.mark.asyncio(loop_scope="session")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CleanDatabases]:
    dbs = CleanDatabases(tmp_path_factory.mktemp("webhooks"))
    yield dbs
    await dbs.close()
    if await pg_unreachable_reason() is None:
        await drop_schemas()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, databases: CleanDatabases) -> Database:
    return await databases.get(request.param)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeCrm:
    """Answers ``fail_first`` requests with ``failure`` (a status or an exception), then 200.

    Verifies every signature against the worker's clock, as a real receiver would.
    """

    clock: Callable[[], datetime]
    fail_first: int = 0
    failure: int | type[Exception] = 503
    headers_on_failure: dict[str, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    bad_signatures: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        ok = verify_signature(
            SECRET, request.content, timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER), now=self.clock().timestamp(),
        )
        if not ok:
            self.bad_signatures += 1
            return httpx.Response(401)
        if len(self.requests) <= self.fail_first:
            if isinstance(self.failure, int):
                return httpx.Response(self.failure, text="CRM down", headers=self.headers_on_failure)
            raise self.failure("connection refused")
        return httpx.Response(200, json={"ok": True})


def _worker(db: Database, crm: FakeCrm, clock: Clock, **kw: object) -> OutboxWorker:
    client = httpx.AsyncClient(transport=httpx.MockTransport(crm))
    return OutboxWorker(db, client, url=URL, secret=SECRET, clock=clock, rng=random.Random(7), **kw)  # type: ignore[arg-type]


async def _enqueue(db: Database, n: int = 1, topic: OutboxTopic = OutboxTopic.escalation_created) -> None:
    async with db.transaction() as uow:
        for i in range(n):
            await uow.outbox.enqueue(topic, {"conversation_id": "c1", "i": i, "reason": "客户提到12315"}, now=T0)


async def _run_until_settled(worker: OutboxWorker, clock: Clock, *, rounds: int = 50) -> None:
    """Drive the worker like time passing: deliver what is due, then jump to the next due time."""
    for _ in range(rounds):
        await worker.run_once()
        async with worker.db.transaction() as uow:
            pending = await uow.outbox.list_events(status=OutboxStatus.pending)
        if not pending:
            return
        clock.now = max(clock.now, min(e.next_attempt_at for e in pending))
    raise AssertionError("outbox did not settle")


# --- signing and backoff (pure) --------------------------------------------------------------


def test_signature_round_trip_and_tampering() -> None:
    body = json.dumps({"payload": {"text": "差评"}}, ensure_ascii=False).encode()
    ts = int(T0.timestamp())
    sig = sign(SECRET, ts, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    now = T0.timestamp() + 10
    assert verify_signature(SECRET, body, timestamp=str(ts), signature=sig, now=now)
    assert not verify_signature("other-secret", body, timestamp=str(ts), signature=sig, now=now)
    assert not verify_signature(SECRET, body + b" ", timestamp=str(ts), signature=sig, now=now)
    assert not verify_signature(SECRET, body, timestamp=str(ts + 1), signature=sig, now=now), "timestamp is signed"
    assert not verify_signature(SECRET, body, timestamp=str(ts), signature=sig, now=now + 3600), "replayed late"
    assert not verify_signature(SECRET, body, timestamp=None, signature=sig, now=now)
    assert not verify_signature(SECRET, body, timestamp="soon", signature=sig, now=now)


def test_backoff_doubles_up_to_the_cap_then_dead_letters() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=2, max_delay_s=10, jitter=0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    assert policy.next_attempt(1, T0) == T0 + timedelta(seconds=2)
    assert policy.next_attempt(5, T0) is None, "the max-th failure is the last"
    assert policy.next_attempt(1, T0, retry_after_s=7) == T0 + timedelta(seconds=7), "Retry-After honoured"
    assert policy.next_attempt(1, T0, retry_after_s=3600) == T0 + timedelta(seconds=10), "...within the cap"
    jittered = RetryPolicy(base_delay_s=100, jitter=0.2)
    delays = {jittered.delay_s(1, random.Random(seed)) for seed in range(20)}
    assert all(80 <= d <= 120 for d in delays) and len(delays) > 1


# --- the worker against the real outbox ------------------------------------------------------


@on_session_loop
async def test_a_crm_down_for_the_first_attempts_still_gets_the_event_once(db: Database) -> None:
    clock = Clock()
    crm = FakeCrm(clock, fail_first=3)
    worker = _worker(db, crm, clock, retry=RetryPolicy(max_attempts=6, base_delay_s=2, jitter=0))
    await _enqueue(db)
    await _run_until_settled(worker, clock)

    assert len(crm.requests) == 4 and crm.bad_signatures == 0
    assert clock.now == T0 + timedelta(seconds=2 + 4 + 8), "retried with exponential backoff"
    bodies = {r.content for r in crm.requests}
    assert len(bodies) == 1, "the body is identical on every attempt"
    last = crm.requests[-1]
    assert last.method == "POST" and str(last.url) == URL
    assert last.headers[TOPIC_HEADER] == "escalation.created" and last.headers[ATTEMPT_HEADER] == "4"
    assert len({r.headers[EVENT_ID_HEADER] for r in crm.requests}) == 1, "one event id for deduplication"
    doc = json.loads(last.content)
    assert doc["id"] == last.headers[EVENT_ID_HEADER] and doc["topic"] == "escalation.created"
    assert doc["payload"] == {"conversation_id": "c1", "i": 0, "reason": "客户提到12315"}
    async with db.transaction() as uow:
        (event,) = await uow.outbox.list_events()
    assert event.status is OutboxStatus.delivered and event.attempts == 4 and event.last_error is None
    assert (worker.stats.delivered, worker.stats.failed_attempts, worker.stats.dead) == (1, 3, 0)


@on_session_loop
async def test_transport_errors_are_retried_like_http_errors(db: Database) -> None:
    clock = Clock()
    crm = FakeCrm(clock, fail_first=2, failure=httpx.ConnectError)
    worker = _worker(db, crm, clock, retry=RetryPolicy(base_delay_s=1, jitter=0))
    await _enqueue(db)
    await _run_until_settled(worker, clock)
    async with db.transaction() as uow:
        (event,) = await uow.outbox.list_events()
    assert event.status is OutboxStatus.delivered and event.attempts == 3


@on_session_loop
async def test_a_crm_that_never_answers_dead_letters_after_max_attempts(db: Database) -> None:
    clock = Clock()
    crm = FakeCrm(clock, fail_first=10**6, failure=500)
    metrics = Metrics()
    worker = _worker(db, crm, clock, retry=RetryPolicy(max_attempts=4, base_delay_s=1, jitter=0),
                     on_result=metrics.webhook_result)
    await _enqueue(db, n=2, topic=OutboxTopic.quality_alert_raised)
    await _run_until_settled(worker, clock)
    assert len(crm.requests) == 8
    async with db.transaction() as uow:
        dead = await uow.outbox.list_events(status=OutboxStatus.dead)
    assert [(e.attempts, e.last_error) for e in dead] == [(4, "HTTP 500: CRM down")] * 2
    assert worker.stats.dead == 2
    # Once the CRM is fixed an operator requeues; the event goes out with fresh attempts.
    crm.fail_first = 0
    async with db.transaction() as uow:
        await uow.outbox.requeue(dead[0].id, now=clock.now)
    await _run_until_settled(worker, clock)
    async with db.transaction() as uow:
        counts = await uow.outbox.counts()
    assert counts == {OutboxStatus.pending: 0, OutboxStatus.delivered: 1, OutboxStatus.dead: 1}
    results = {r: metrics.value("assist_webhook_deliveries_total", topic="quality_alert.raised", result=r)
               for r in ("delivered", "failed", "dead")}
    assert results == {"delivered": 1, "failed": 8, "dead": 2}


@on_session_loop
async def test_retry_after_from_the_crm_is_respected(db: Database) -> None:
    clock = Clock()
    crm = FakeCrm(clock, fail_first=1, failure=429, headers_on_failure={"Retry-After": "30"})
    worker = _worker(db, crm, clock, retry=RetryPolicy(base_delay_s=1, jitter=0))
    await _enqueue(db)
    await worker.run_once()
    async with db.transaction() as uow:
        (event,) = await uow.outbox.list_events()
    assert event.next_attempt_at == T0 + timedelta(seconds=30)


@on_session_loop
async def test_background_worker_delivers_on_notify_and_stops_cleanly(db: Database) -> None:
    # Real time here: start(), notify() and stop() as the app lifespan uses them.
    delivered = asyncio.Event()
    seen: list[str] = []

    def crm(request: httpx.Request) -> httpx.Response:
        assert verify_signature(SECRET, request.content, timestamp=request.headers[TIMESTAMP_HEADER],
                                signature=request.headers[SIGNATURE_HEADER])
        seen.append(request.headers[TOPIC_HEADER])
        if len(seen) == 1:
            return httpx.Response(503)  # one failure, retried after ~10 ms
        delivered.set()
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(crm)) as client:
        worker = OutboxWorker(db, client, url=URL, secret=SECRET, poll_interval_s=0.02,
                              retry=RetryPolicy(base_delay_s=0.01, jitter=0))
        async with worker:
            async with db.transaction() as uow:
                await uow.outbox.enqueue(OutboxTopic.suggestion_accepted, {"suggestion_id": "t3:cross_sell:0"})
            worker.notify()
            await asyncio.wait_for(delivered.wait(), timeout=5)
        assert worker._task is None
    assert seen == ["suggestion.accepted", "suggestion.accepted"]
    async with db.transaction() as uow:
        (event,) = await uow.outbox.list_events()
    assert event.status is OutboxStatus.delivered


def test_worker_refuses_unsafe_configuration() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(ValueError, match="url"):
        OutboxWorker(None, client, url="", secret=SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        OutboxWorker(None, client, url=URL, secret=SECRET, lease_s=5, timeout_s=10)  # type: ignore[arg-type]
