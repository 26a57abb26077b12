"""Outbound webhooks to the CRM, delivered from the durable outbox (DESIGN §4).

Producers write an event with ``uow.outbox.enqueue(topic, payload)`` inside the transaction
that made the change; ``OutboxWorker`` (a background task started in the app lifespan)
delivers it. Nothing is lost while the CRM is down: failed deliveries are retried with
exponential backoff until ``RetryPolicy.max_attempts``, then the event is dead-lettered
(status ``dead``; ``uow.outbox.requeue(id)`` retries it). Delivery is at-least-once, so
receivers deduplicate on ``X-Assist-Event-Id``.

The request::

    POST <webhook_url>
    Content-Type: application/json
    X-Assist-Event-Id: 6f1c...            unique per event, stable across retries
    X-Assist-Topic: escalation.created
    X-Assist-Attempt: 1
    X-Assist-Timestamp: 1732471234         unix seconds when this attempt was signed
    X-Assist-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>

    {"id": "6f1c...", "topic": "escalation.created", "created_at": "...", "payload": {...}}

Signing the timestamp with the body lets a receiver refuse replays of an old request
(``verify_signature`` rejects timestamps more than ``tolerance_s`` away from its clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx

from assist.store import Database, OutboxEvent

_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


EVENT_ID_HEADER = "X-Assist-Event-Id"
TOPIC_HEADER = "X-Assist-Topic"
ATTEMPT_HEADER = "X-Assist-Attempt"
TIMESTAMP_HEADER = "X-Assist-Timestamp"
SIGNATURE_HEADER = "X-Assist-Signature"


# --- signing (pure) --------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Assist-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` is ours for ``body`` and ``timestamp`` is within ``tolerance_s`` of now.

    What a receiver (the CRM, or a test) runs on the raw request body, before parsing it.
    Compares in constant time.
    """
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def encode_event(event: OutboxEvent) -> bytes:
    """The request body: identical on every attempt, so receivers may also hash it."""
    doc = {
        "id": event.event_id,
        "tenant": event.tenant_id,
        "topic": event.topic,
        "created_at": event.created_at.isoformat(),
        "payload": event.payload,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(event: OutboxEvent, body: bytes, *, secret: str, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.event_id,
        TOPIC_HEADER: event.topic,
        ATTEMPT_HEADER: str(event.attempts),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


# --- retry policy (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt n failed -> wait ``base_delay_s * 2**(n-1)``, capped, jittered.

    Defaults (2 s doubling to a 10 min cap, 12 attempts) keep retrying for about an hour, long
    enough to ride out a CRM deploy or a short outage; after that a human should look.
    """

    max_attempts: int = 12
    base_delay_s: float = 2.0
    max_delay_s: float = 600.0
    # +-20 % spread so events that failed together (CRM outage) do not retry in lockstep.
    jitter: float = 0.2

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, attempts - 1))
        if self.jitter and rng is not None:
            raw *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, raw)

    def next_attempt(
        self, attempts: int, now: datetime, *, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after ``attempts`` failures, or None: dead-letter it."""
        if attempts >= self.max_attempts:
            return None
        wait = self.delay_s(attempts, rng)
        if retry_after_s is not None:
            # The CRM asked for a pause (429/503 Retry-After): honour it, within our cap.
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return now + timedelta(seconds=wait)


def _retry_after_s(response: httpx.Response, now: datetime) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, float((parsedate_to_datetime(value) - now).total_seconds()))
    except (TypeError, ValueError):
        return None


# --- the worker ------------------------------------------------------------------------------


@dataclass
class WorkerStats:
    """Counters for /metrics."""

    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0


@dataclass(frozen=True)
class _Outcome:
    event: OutboxEvent
    error: str | None = None
    retry_after_s: float | None = None


@dataclass
class OutboxWorker:
    """Delivers due outbox events to ``url``; one per process (several replicas may each run one).

    ``client`` is owned by the caller (tests pass ``httpx.AsyncClient(transport=MockTransport(...))``).
    ``clock`` and ``rng`` are injectable so tests can step through backoff without sleeping.

    Use ``await worker.start()`` / ``await worker.stop()`` around the app's life, and call
    ``worker.notify()`` after committing an enqueue so the event goes out now rather than at
    the next poll. ``run_once()`` delivers one batch and is what tests drive directly.
    """

    db: Database
    client: httpx.AsyncClient
    url: str
    secret: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 20
    poll_interval_s: float = 1.0
    lease_s: float = 60.0  # must exceed timeout_s: a lease that expires mid-request means a duplicate
    timeout_s: float = 10.0
    clock: Callable[[], datetime] = _utcnow
    rng: random.Random = field(default_factory=random.Random)
    stats: WorkerStats = field(default_factory=WorkerStats)
    # (topic, "delivered" | "failed" | "dead") after each attempt, e.g. Metrics.webhook_result.
    on_result: Callable[[str, str], None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("OutboxWorker needs a webhook url (ASSIST_WEBHOOK_URL)")
        if self.lease_s <= self.timeout_s:
            raise ValueError("lease_s must be longer than timeout_s, or slow deliveries get duplicated")

    async def run_once(self) -> int:
        """Claim one batch of due events, deliver them concurrently, record the outcomes.

        Returns how many events were attempted (0: nothing was due).
        """
        now = self.clock()
        async with self.db.transaction() as uow:
            events = await uow.outbox.claim_due(
                now=now, limit=self.batch_size, lease=timedelta(seconds=self.lease_s)
            )
        if not events:
            return 0
        # No transaction is held while talking to the CRM: a slow CRM must not pin a
        # connection or (on SQLite) the single write lock.
        outcomes = await asyncio.gather(*(self._deliver(e) for e in events))
        done = self.clock()
        async with self.db.transaction() as uow:
            for o in outcomes:
                if o.error is None:
                    await uow.outbox.mark_delivered(o.event.id, now=done)
                    continue
                retry_at = self.retry.next_attempt(o.event.attempts, done, retry_after_s=o.retry_after_s,
                                                   rng=self.rng)
                await uow.outbox.mark_failed(o.event.id, o.error, retry_at=retry_at)
        for o in outcomes:
            self._count(o)
        return len(events)

    async def _deliver(self, event: OutboxEvent) -> _Outcome:
        body = encode_event(event)
        headers = signed_headers(event, body, secret=self.secret, timestamp=int(self.clock().timestamp()))
        try:
            response = await self.client.post(self.url, content=body, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            return _Outcome(event, error=f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return _Outcome(event)
        # Every non-2xx is retried, 4xx included: a 401 after a secret rotation or a 404
        # during a CRM deploy is fixed on their side, and max_attempts bounds the cost.
        return _Outcome(
            event,
            error=f"HTTP {response.status_code}: {response.text[:200]}",
            retry_after_s=_retry_after_s(response, self.clock()),
        )

    def _count(self, o: _Outcome) -> None:
        report = self.on_result or (lambda _topic, _result: None)
        if o.error is None:
            self.stats.delivered += 1
            report(o.event.topic, "delivered")
            return
        self.stats.failed_attempts += 1
        report(o.event.topic, "failed")
        if o.event.attempts >= self.retry.max_attempts:
            self.stats.dead += 1
            report(o.event.topic, "dead")
            _log.error("webhook %s (%s) dead after %d attempts: %s", o.event.event_id, o.event.topic,
                       o.event.attempts, o.error)
        else:
            _log.warning("webhook %s (%s) attempt %d failed: %s", o.event.event_id, o.event.topic,
                         o.event.attempts, o.error)

    def notify(self) -> None:
        """Wake the worker now (call after committing an ``enqueue``)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until ``stop()``; polls every ``poll_interval_s`` when idle."""
        while not self._stopping:
            try:
                attempted = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database being briefly unavailable must not kill the worker for the
                # life of the process; log it and try again at the next poll.
                _log.exception("outbox worker: delivery round failed")
                attempted = 0
            if attempted >= self.batch_size:
                continue  # a full batch: more are probably due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
            self._wake.clear()

    async def start(self) -> None:
        """Run ``run()`` as a background task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="assist-outbox-worker")

    async def stop(self, *, timeout_s: float = 5.0) -> None:
        """Finish the round in flight (up to ``timeout_s``), then stop.

        Events cut off mid-delivery stay leased and are retried after the lease, by this
        process after a restart or by another replica.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):  # on timeout wait_for has cancelled it
            await asyncio.wait_for(task, timeout=timeout_s)

    async def __aenter__(self) -> OutboxWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = [
    "ATTEMPT_HEADER",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOPIC_HEADER",
    "OutboxWorker",
    "RetryPolicy",
    "WorkerStats",
    "encode_event",
    "sign",
    "signed_headers",
    "verify_signature",
]
