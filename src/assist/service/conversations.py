"""The conversation service: ordering, idempotency, persistence and push of conversation frames.

Both transports call it — the WebSocket session (:mod:`assist.service.ws`) and the REST routes
(:mod:`assist.service.rest.conversations`, :mod:`assist.service.rest.crm`) — so a turn posted over
REST and one sent over the WebSocket go through exactly the same steps:

0. **admit** (:mod:`assist.service.admission`): the turn is priced in seconds of work and refused
   with ``server.busy`` when the backlog is full, before anything is stored or acked.
1. **ingest** (in arrival order, per conversation): the turn is inserted and its ``ack`` frame is
   stored in one transaction, which commits *before* the ack is pushed. A SIGKILL right after
   the ack cannot lose the turn; start-up recovery (:meth:`recover`) processes it.
   A repeated ``turn_id`` inserts nothing: the stored result is returned, never reprocessed.
2. **process** (in the same order): prepare -> micro-batched embedding -> classify/retrieve ->
   :class:`assist.engine.Engine` (all off the event loop) -> one transaction that stores the new
   state, the ``analysis`` frame and the turn's result (plus outbox events for the CRM) -> push.

Each conversation has a :class:`_Lane`: a FIFO ``ingest`` lock and a chain of processing slots.
A turn takes ``ingest``, acks, and reserves its processing slot *before* letting the next turn
ingest, so acks are prompt while turns of one conversation are analysed strictly in order;
different conversations run concurrently. The ``emit`` lock covers "assign seq + commit + push", so every subscriber sees frames in
seq order. Business rules stay in the Engine: this module only orders, stores and pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from assist.errors import AssistError, ConversationNotFound, NotReadyError, TurnIdConflict
from assist.policy.actions import Action, ActionType
from assist.service.admission import Admission, Ticket
from assist.service.batcher import EmbedBatcher, Embedded
from assist.service.frames import AckFrame, AnalysisFrame, EventFrame, Outcome, Role, TurnFrame
from assist.service.metrics import Metrics
from assist.service.quality import QualityMonitor, Recorded
from assist.state import ConversationState, CustomerProfile, OrderEvent
from assist.store.records import OutboxTopic, TurnRecord, TurnStatus
from assist.store.unit import UnitOfWork
from assist.turn import customer_step
from assist.types import Analysis
from assist.understanding.encoder import truncate_for_embedding

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Turns longer than this are normalised and tokenised in a worker thread rather than on the loop
# (jieba is ~0.1 ms for a chat line, but a pasted paragraph costs milliseconds).
_LONG_TEXT = 200


@dataclass(frozen=True)
class StoredFrame:
    """A conversation frame as committed: its seq and its wire text (serialised once, sent to all)."""

    seq: int
    text: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> StoredFrame:
        return cls(int(doc["seq"]), json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


class Sink(Protocol):
    """A subscriber to a conversation's frames (a WebSocket session). Must not block or await."""

    def deliver(self, frame: StoredFrame) -> None: ...


@dataclass(frozen=True)
class TurnResult:
    """What :meth:`ConversationService.submit_turn` returns.

    ``analysis`` is the stored analysis frame (a dict, exactly what was pushed, with its seq);
    ``duplicate`` says the turn_id was seen before and nothing was reprocessed.
    """

    turn_id: str
    duplicate: bool
    analysis: dict[str, Any] | None
    analysis_text: str | None


@dataclass
class _Lane:
    """Per-conversation coordination, alive while anyone uses or watches the conversation."""

    ingest: asyncio.Lock = field(default_factory=asyncio.Lock)
    emit: asyncio.Lock = field(default_factory=asyncio.Lock)
    tail: asyncio.Future[None] | None = None  # completion of the last reserved processing slot
    sinks: set[Sink] = field(default_factory=set)
    users: int = 0
    state: ConversationState | None = None  # cache of the stored state (write-through)
    last_seq: int | None = None  # highest seq pushed to sinks
    known: bool = False  # the conversation row exists

    def reserve(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """Take the next processing slot, synchronously (so in the caller's arrival order).

        Returns the predecessor's completion (None: nobody ahead) and this slot's own. A FIFO
        chain of futures rather than a second lock: a lock is ordered by *when* ``acquire`` runs,
        and a slot must be reserved while ``ingest`` is still held, without an await in between.
        """
        prev, mine = self.tail, asyncio.get_running_loop().create_future()
        self.tail = mine
        return prev, mine


@contextlib.asynccontextmanager
async def _slot(prev: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> AsyncIterator[None]:
    """Wait for the predecessor's slot to finish, run the body, then let the successor go."""
    try:
        if prev is not None:
            # shield: cancelling this waiter must not cancel the predecessor's future, which
            # would let our successor start while the predecessor is still running.
            await asyncio.shield(prev)
        yield
    finally:
        if prev is None or prev.done():
            if not mine.done():
                mine.set_result(None)
        else:  # cancelled while waiting: hand over only when the predecessor is really done
            prev.add_done_callback(lambda _f: mine.done() or mine.set_result(None))


class Database(Protocol):
    """What the service needs from :class:`assist.store.db.Database`."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]: ...


def _escalation_events(frame: AnalysisFrame) -> list[EventFrame]:
    """An ``escalation.created`` event next to an analysis that escalates, for consoles that watch
    for escalations (a supervisor's) rather than read every analysis."""
    return [
        EventFrame(conversation_id=frame.conversation_id, event="escalation.created",
                   data={"turn_id": frame.turn_id, "action_id": a.id, "reason": a.reason}, actions=[a])
        for a in frame.actions if a.type == ActionType.escalate
    ]


def _now() -> datetime:
    return datetime.now(UTC)


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


class ConversationService:
    """Turns, feedback, resolve, CRM events and replay for conversations; see the module docstring.

    Args:
        db: the store (``Database.transaction()`` yields a unit of work that commits on exit).
        engine: the pure step engine (business rules).
        pipeline: the understanding pipeline (``prepare`` / ``complete``).
        batcher: micro-batcher in front of ``pipeline.embed``.
        cpu: executor for classification, retrieval and the engine (GIL-bound but kept off the loop).
        metrics: where turn counts and latencies go.
        webhooks: enqueue outbox events for the CRM (only when a webhook URL is configured).
        admission: prices and admits turns (default: unbounded, priced by the batcher's cost model).
        quality: records confirmed defects with their turns and judges quality alerts (None: off).
    """

    def __init__(
        self,
        *,
        db: Database,
        engine: Any,
        pipeline: Any,
        batcher: EmbedBatcher,
        cpu: Executor,
        metrics: Metrics,
        webhooks: bool = False,
        admission: Admission | None = None,
        quality: QualityMonitor | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.pipeline = pipeline
        self.batcher = batcher
        self.cpu = cpu
        self.metrics = metrics
        self.webhooks = webhooks
        self.admission = admission or Admission(batcher.cost, limit_s=float("inf"), total_limit_s=float("inf"),
                                                metrics=metrics)
        self.worker_cpu_s = 0.0  # CPU the turn workers spent (cumulative), for the cost model
        self.quality = quality
        # One admission control serves every tenant's services: its conversations are told apart
        # by tenant, since two tenants may both have a conversation "c1".
        self._tenant = str(getattr(db, "tenant", "default"))
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # --- task and lane bookkeeping -------------------------------------------------------------

    def admission_key(self, conversation_id: str) -> str:
        """The conversation's name in the process-wide admission control (tenant-qualified)."""
        return f"{self._tenant}\x1f{conversation_id}"

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task the service waits for at shutdown.

        Tasks start in creation order and each takes its conversation's lock in its first step, so
        frames spawned in arrival order are processed in arrival order.
        """
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Let in-flight turns finish (they are already acked), then stop."""
        self._closing = True
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for t in pending:
                t.cancel()

    @contextlib.asynccontextmanager
    async def _lane(self, conversation_id: str) -> AsyncIterator[_Lane]:
        lane = self._lanes.get(conversation_id)
        if lane is None:
            lane = self._lanes[conversation_id] = _Lane()
        lane.users += 1
        try:
            yield lane
        finally:
            lane.users -= 1
            if lane.users == 0 and not lane.sinks:
                self._lanes.pop(conversation_id, None)

    def _watched(self, conversation_id: str, lane: _Lane) -> None:
        # Admission and the encoder's queue serve watched conversations first.
        self.admission.set_live(self.admission_key(conversation_id), bool(lane.sinks))

    @contextlib.asynccontextmanager
    async def _ordered(self, lane: _Lane) -> AsyncIterator[None]:
        """Both locks in arrival order: for changes that have no separate ack phase."""
        async with lane.ingest:
            prev, mine = lane.reserve()
        async with _slot(prev, mine):
            yield

    def subscribe(self, conversation_id: str, sink: Sink) -> None:
        lane = self._lanes.get(conversation_id)
        if lane is None:
            lane = self._lanes[conversation_id] = _Lane()
        lane.sinks.add(sink)
        self._watched(conversation_id, lane)

    def unsubscribe(self, conversation_id: str, sink: Sink) -> None:
        lane = self._lanes.get(conversation_id)
        if lane is None:
            return
        lane.sinks.discard(sink)
        self._watched(conversation_id, lane)
        if lane.users == 0 and not lane.sinks:
            self._lanes.pop(conversation_id, None)

    def watchers(self, conversation_id: str) -> int:
        lane = self._lanes.get(conversation_id)
        return len(lane.sinks) if lane else 0

    # --- state and frames ------------------------------------------------------------------------

    async def _load(self, lane: _Lane, uow: UnitOfWork, conversation_id: str, *,
                    create: bool = False, customer: CustomerProfile | None = None) -> ConversationState:
        """The conversation's state (cached on the lane); creates the conversation when asked."""
        if lane.state is not None and lane.known:
            return lane.state
        if create:
            record, _created = await uow.conversations.ensure(
                conversation_id, customer_id=customer.id if customer else None,
                initial_state=self.engine.new_conversation(conversation_id, customer),
            )
        else:
            found = await uow.conversations.find(conversation_id)
            if found is None:
                raise ConversationNotFound(f"conversation {conversation_id!r} not found; open it with hello first")
            record = found
        state = (ConversationState.model_validate(record.state) if record.state
                 else self.engine.new_conversation(conversation_id, customer))
        lane.state, lane.known = state, True
        if lane.last_seq is None:
            lane.last_seq = record.last_seq
        return state

    def _publish(self, lane: _Lane, stored: Sequence[dict[str, Any]]) -> list[StoredFrame]:
        """Push committed frames to every subscriber. Synchronous: nothing can interleave."""
        out = [StoredFrame.of(doc) for doc in stored]
        for doc, frame in zip(stored, out, strict=True):
            lane.last_seq = max(lane.last_seq or 0, frame.seq)
            self.metrics.frames.labels(type=str(doc.get("type", "?"))).inc()
            for sink in list(lane.sinks):
                try:
                    sink.deliver(frame)
                except Exception:  # one broken console must not stop the others
                    _log.exception("delivering frame %s to a subscriber failed", frame.seq)
        return out

    async def _run_cpu(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def timed() -> tuple[T, float]:
            t = time.thread_time()
            return fn(*args, **kwargs), time.thread_time() - t

        result, cpu_s = await asyncio.get_running_loop().run_in_executor(self.cpu, timed)
        self.worker_cpu_s += cpu_s
        return result

    # --- open / resume -----------------------------------------------------------------------------

    async def open(self, conversation_id: str, *, customer: CustomerProfile | None = None, create: bool = True,
                   sink: Sink | None = None) -> int:
        """Open (or create) a conversation, attach ``customer``, subscribe ``sink``; returns its last seq.

        A profile given with only its ``id`` means "this customer": the stored CRM profile is used.
        A different profile than the conversation has is applied through ``Engine.profile`` and
        announced with a ``profile.updated`` event. Raises ``ConversationNotFound`` when
        ``create`` is false and the conversation does not exist.
        """
        async with self._lane(conversation_id) as lane, self._ordered(lane):
            async with self.db.transaction() as uow:
                if customer is not None:
                    customer = await self._resolve_profile(uow, customer)
                state = await self._load(lane, uow, conversation_id, create=create, customer=customer)
                if customer is not None:
                    # Link the row to the customer (if it has none yet) so CRM events find it.
                    await uow.conversations.ensure(conversation_id, customer_id=customer.id)
            if customer is not None and self.engine.profile(state, customer).state.customer != state.customer:
                await self._apply_profile(lane, conversation_id, state, customer)
            if sink is not None:
                lane.sinks.add(sink)
                self._watched(conversation_id, lane)
            return lane.last_seq or 0

    async def _resolve_profile(self, uow: UnitOfWork, customer: CustomerProfile) -> CustomerProfile:
        if customer.model_fields_set <= {"id"}:
            stored = await uow.customers.get(customer.id)
            return CustomerProfile.model_validate(stored.profile) if stored else customer
        await uow.customers.upsert(customer.id, customer)
        return customer

    async def frames_after(self, conversation_id: str, last_seq: int, *, limit: int = 200) -> list[StoredFrame]:
        """Stored frames with seq > ``last_seq``, in order (what ``resume`` replays)."""
        async with self.db.transaction() as uow:
            docs = await uow.conversations.frames_after(conversation_id, last_seq, limit=limit)
        return [StoredFrame.of(d) for d in docs]

    async def frame_docs(self, conversation_id: str, last_seq: int, *, limit: int = 200) -> list[dict[str, Any]]:
        """Like :meth:`frames_after`, as dicts; raises ``ConversationNotFound`` for an unknown id."""
        async with self.db.transaction() as uow:
            await uow.conversations.get(conversation_id)
            return await uow.conversations.frames_after(conversation_id, last_seq, limit=limit)

    # --- turns ---------------------------------------------------------------------------------------

    async def submit_turn(self, conversation_id: str, turn: TurnFrame, *, create: bool = True,
                          waiting: bool = False) -> TurnResult:
        """Admit, persist, ack, process and push one turn; see the module docstring for the steps.

        ``waiting``: the caller waits for the analysis (REST), so the turn counts as live whether
        or not a console watches the conversation.

        Raises:
            ServerBusyError: the backlog is full; nothing was stored (resend after ``retry_after``).
            ConversationNotFound: ``create`` is false and the conversation does not exist.
            AssistError: processing failed (the turn stays stored, marked failed, and is not retried).
        """
        if self._closing:
            raise NotReadyError("the service is shutting down; resend the turn after reconnecting")
        if turn.ts is not None and turn.ts.tzinfo is None:
            # A naive timestamp is wall-clock time in the shop's timezone, as the engine and the
            # replay read logged conversations; the store would otherwise take it as UTC.
            tz = getattr(getattr(getattr(self.engine, "policy", None), "config", None), "tz", None) or UTC
            turn = turn.model_copy(update={"ts": turn.ts.replace(tzinfo=tz)})
        t0 = time.perf_counter()
        customer = turn.role is Role.customer
        # Before anything is stored: a refused turn was never acked, so the client resends it.
        self.admission.precheck(self.admission_key(conversation_id), pinned=waiting)
        tokens = self._tokens(turn.text) if customer else None
        ticket = self.admission.admit(self.admission_key(conversation_id), tokens=tokens, pinned=waiting)
        # The embedding depends on the text alone, so it starts now and overlaps the ingest commit
        # and the wait for earlier turns; only its result is used in order.
        early = self.spawn(self._understand_text(turn.text, ticket, tokens)) if customer else None
        try:
            async with self._lane(conversation_id) as lane:
                # The first await of this coroutine: tasks spawned in arrival order queue here in order.
                async with lane.ingest:
                    record, created, ingest_ms = await self._ingest(lane, conversation_id, turn, create=create)
                    # Reserve the processing slot before the next turn may ingest: keeps the order.
                    prev, mine = lane.reserve()
                async with _slot(prev, mine):
                    return await self._process(lane, conversation_id, turn.turn_id, t0=t0, ingest_ms=ingest_ms,
                                               early=early, fresh=record if created else None, ticket=ticket)
        finally:
            self.admission.release(ticket)
            if early is not None and not early.done():
                early.cancel()  # a duplicate or a failure: nobody will use it

    def _tokens(self, text: str) -> int:
        return self.batcher.cost.tokens(truncate_for_embedding(text, self.batcher.max_chars))

    async def _understand_text(self, text: str, ticket: Ticket | None = None, tokens: int | None = None
                               ) -> tuple[Any, Embedded]:
        """Prepare and embed a text: the part of the analysis that needs no conversation state."""
        prepared = (self.pipeline.prepare(text) if len(text) <= _LONG_TEXT
                    else await self._run_cpu(self.pipeline.prepare, text))
        if ticket is None:
            emb = await self.batcher.embed(prepared.normalised, tokens=tokens)
        else:
            emb = await self.batcher.embed(prepared.normalised, tokens=tokens,
                                           priority=lambda: self.admission.priority(ticket))
            self.admission.embedded(ticket)
        return prepared, emb

    async def _ingest(self, lane: _Lane, conversation_id: str, turn: TurnFrame, *, create: bool
                      ) -> tuple[TurnRecord, bool, float]:
        t = time.perf_counter()
        async with lane.emit:
            async with self.db.transaction() as uow:
                await self._load(lane, uow, conversation_id, create=create)
                record, created = await uow.conversations.insert_turn(
                    conversation_id, turn_id=turn.turn_id, role=turn.role.value, text=turn.text, ts=turn.ts,
                )
                if not created and (record.text != turn.text or record.role != turn.role.value):
                    # A resend is the same message; another message under a used id would be
                    # silently dropped if it were answered as a duplicate.
                    raise TurnIdConflict(f"turn_id {turn.turn_id!r} was used for another message in this "
                                         "conversation; give every message its own turn_id")
                stored = []
                if created:
                    ack = AckFrame(conversation_id=conversation_id, ref="turn", turn_id=turn.turn_id)
                    stored = [await uow.conversations.append_frame(conversation_id, ack)]
            # Committed: only now may the client learn that the turn is safe.
            self._publish(lane, stored)
        return record, created, (time.perf_counter() - t) * 1e3

    async def _process(self, lane: _Lane, conversation_id: str, turn_id: str, *, t0: float,
                       ingest_ms: float = 0.0, early: asyncio.Task[tuple[Any, Embedded]] | None = None,
                       fresh: TurnRecord | None = None, ticket: Ticket | None = None) -> TurnResult:
        """Process a stored turn in its slot, or answer from its stored result.

        ``fresh``: the record this call just inserted; nobody else can have touched it, so the
        read transaction is skipped (one SQLite lock round trip less per turn).
        """
        stored_frame = None
        if fresh is not None and lane.state is not None:
            record: TurnRecord | None = fresh
            state = lane.state
        else:
            async with self.db.transaction() as uow:
                record = await uow.conversations.get_turn(conversation_id, turn_id)
                state = await self._load(lane, uow, conversation_id)
                if record is not None and record.status is TurnStatus.processed and record.analysis_seq is not None:
                    stored_frame = await uow.conversations.get_frame(conversation_id, record.analysis_seq)
        if record is None:  # pragma: no cover - ingest stored it under the same lock
            raise ConversationNotFound(f"turn {turn_id!r} of {conversation_id!r} not found")
        if record.status is TurnStatus.processed:
            return TurnResult(turn_id, True, stored_frame,
                              StoredFrame.of(stored_frame).text if stored_frame else None)
        if record.status is TurnStatus.failed:
            raise AssistError(f"turn {turn_id!r} failed earlier and is not retried: {record.error}")
        try:
            frame, analysis, actions, new = await self._analyse(state, record, t0=t0, ingest_ms=ingest_ms,
                                                                early=early, ticket=ticket)
        except Exception as exc:
            # Parked as failed so start-up recovery does not loop on a turn that cannot be processed.
            _log.exception("processing turn %s of %s failed", turn_id, conversation_id)
            async with self.db.transaction() as uow:
                await uow.conversations.mark_turn_failed(conversation_id, turn_id, repr(exc))
            if isinstance(exc, AssistError):
                raise
            raise AssistError(f"turn {turn_id!r} could not be processed; it has been logged") from exc
        async with lane.emit:
            async with self.db.transaction() as uow:
                stored = await uow.conversations.complete_turn(
                    conversation_id, turn_id, state=new,
                    analysis=_dump(analysis) if analysis is not None else None,
                    actions=[_dump(a) for a in actions], frames=[frame, *_escalation_events(frame)], result_frame=0,
                )
                await self._enqueue_webhooks(uow, conversation_id, actions, turn_id=turn_id)
                defects = await self.quality.record_turn(
                    uow, conversation_id=conversation_id, turn_id=turn_id, at=record.ts, before=state, after=new,
                    actions=actions, intent=analysis.intent.label.value,
                ) if self.quality is not None and analysis is not None else None
            lane.state = new
            pushed = self._publish(lane, stored)
        self._judge_quality(defects)
        self._count_shown(actions)
        self.metrics.turns.labels(role=record.role).inc()
        self.metrics.turn_latency.observe(time.perf_counter() - t0)
        return TurnResult(turn_id, False, stored[0], pushed[0].text)

    async def _analyse(self, state: ConversationState, record: TurnRecord, *, t0: float, ingest_ms: float,
                       early: asyncio.Task[tuple[Any, Embedded]] | None = None, ticket: Ticket | None = None,
                       ) -> tuple[AnalysisFrame, Analysis | None, list[Action], ConversationState]:
        """Pipeline + Engine for one stored turn. Returns the frame (seq unset) and what to store."""
        ts = record.ts
        if record.role == Role.customer.value:
            text = record.text
            prepared, emb = await (early if early is not None else self._understand_text(text, ticket))
            now = _now()

            def decide() -> tuple[Analysis, Any, float]:
                r = customer_step(self.pipeline, self.engine, state, prepared=prepared, vec=emb.vec,
                                  retrieval_vec=emb.retrieval_vec, embed_ms=emb.ms, turn_id=record.turn_id,
                                  text=text, ts=ts, now=now)
                return r.analysis, r.step, r.policy_ms

            analysis, step, policy_ms = await self._run_cpu(decide)
            timings = dict(analysis.timings_ms)
        else:
            analysis = None
            now = _now()

            def check() -> tuple[Any, float]:
                tp = time.perf_counter()
                step = self.engine.agent_turn(state, turn_id=record.turn_id, text=record.text, ts=ts, now=now)
                return step, (time.perf_counter() - tp) * 1e3

            step, policy_ms = await self._run_cpu(check)
            timings = {}
        timings["policy"] = round(policy_ms, 3)
        timings["ingest"] = round(ingest_ms, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1e3, 3)
        actions = list(step.actions)
        frame = AnalysisFrame(
            conversation_id=record.conversation_id, turn_id=record.turn_id, role=Role(record.role), ts=ts,
            intent=analysis.intent if analysis else None, sentiment=analysis.sentiment if analysis else None,
            kb=analysis.kb if analysis else None, skus_mentioned=analysis.skus_mentioned if analysis else [],
            actions=actions, state=step.state, timings_ms=timings,
        )
        return frame, analysis, actions, step.state

    async def analyse_text(self, text: str, *, skus: Sequence[str] = (), category: str | None = None) -> Analysis:
        """Stateless analysis of one text (``POST /v1/analyze``), batched and admitted like a live turn.

        Raises ``ServerBusyError`` when the backlog is full.
        """
        tokens = self._tokens(text)
        ticket = self.admission.admit("", tokens=tokens, pinned=True)
        try:
            prepared, emb = await self._understand_text(text, ticket, tokens)
            return await self._run_cpu(self.pipeline.complete, prepared, emb.vec, skus=list(skus), category=category,
                                       retrieval_vec=emb.retrieval_vec, embed_ms=emb.ms)
        finally:
            self.admission.release(ticket)

    async def _enqueue_webhooks(self, uow: UnitOfWork, conversation_id: str, actions: Sequence[Action],
                                *, turn_id: str | None = None) -> None:
        """Outbox events for the CRM, in the same transaction as the change that raised them."""
        if not self.webhooks:
            return
        topics = {ActionType.escalate: OutboxTopic.escalation_created,
                  ActionType.quality_report: OutboxTopic.quality_report_created}
        for action in actions:
            topic = topics.get(action.type)
            if topic is not None:
                await uow.outbox.enqueue(topic, {"conversation_id": conversation_id, "turn_id": turn_id,
                                                 "action": _dump(action)})

    async def recover(self) -> int:
        """Process turns acked before a crash but never analysed, in arrival order; returns how many.

        Runs at start-up, before the service reports ready. Each turn goes through the same lane
        as live traffic, so a client retrying one of them meanwhile is answered, not doubled.
        """
        async with self.db.transaction() as uow:
            pending = await uow.conversations.pending_turns()
        done = 0
        for record in pending:
            t0 = time.perf_counter()
            # Acked before the crash: admitted whatever the backlog, and counted in it.
            ticket = self.admission.admit(self.admission_key(record.conversation_id), force=True,
                                          tokens=self._tokens(record.text) if record.role == Role.customer.value
                                          else None)
            async with self._lane(record.conversation_id) as lane, self._ordered(lane):
                try:
                    await self._process(lane, record.conversation_id, record.turn_id, t0=t0, ticket=ticket)
                    done += 1
                except AssistError as exc:
                    _log.warning("recovering turn %s of %s failed: %s", record.turn_id,
                                 record.conversation_id, exc.message)
                finally:
                    self.admission.release(ticket)
        if pending:
            _log.info("recovered %d of %d pending turn(s)", done, len(pending))
        return done

    # --- feedback, resolve, CRM ------------------------------------------------------------------------

    async def _step(
        self,
        conversation_id: str,
        apply: Callable[[ConversationState], Any],
        *,
        frames: Callable[[Any], list[BaseModel]],
        extra: Callable[[UnitOfWork, Any], Awaitable[None]] | None = None,
        create: bool = False,
    ) -> list[dict[str, Any]]:
        """One engine step outside a turn: load state, apply, store state + frames atomically, push."""
        async with self._lane(conversation_id) as lane, self._ordered(lane):
            async with self.db.transaction() as uow:
                state = await self._load(lane, uow, conversation_id, create=create)
            step = apply(state)
            async with lane.emit:
                async with self.db.transaction() as uow:
                    if extra is not None:
                        await extra(uow, step)
                    await uow.conversations.save_state(conversation_id, step.state)
                    stored = await uow.conversations.append_frames(conversation_id, frames(step))
                    await self._enqueue_webhooks(uow, conversation_id, list(step.actions))
                lane.state = step.state
                self._publish(lane, stored)
            self._count_shown(step.actions)
            return stored

    def _count_shown(self, actions: Sequence[Action]) -> None:
        for a in actions:
            self.metrics.suggestions.labels(type=a.type.value).inc()

    def _judge_quality(self, defects: Recorded | None) -> None:
        """Judge the quality groups a committed change touched, off the caller's path."""
        if defects is not None and self.quality is not None and (groups := self.quality.committed(defects)):
            self.spawn(self.quality.evaluate_logged(groups))

    async def sweep(self, now: datetime | None = None) -> int:
        """Time-driven checks (``Engine.tick``: promises past their deadline) on watched conversations.

        Only conversations a console is watching are swept: an alert nobody sees would wait in
        the store anyway, and the next turn's check catches it. Returns how many alerted.
        """
        alerted = 0
        for conversation_id, lane in list(self._lanes.items()):
            state = lane.state
            if not lane.sinks or state is None or not any(p.status == "open" for p in state.open_promises):
                continue
            at = now or _now()
            step = self.engine.tick(state, at)
            if not step.actions:
                continue
            await self._step(
                conversation_id, lambda s, at=at: self.engine.tick(s, at),  # type: ignore[misc]
                frames=lambda step, cid=conversation_id: [EventFrame(  # type: ignore[misc]
                    conversation_id=cid, event="promise.overdue", actions=list(step.actions), state=step.state)],
            )
            alerted += 1
        return alerted

    async def feedback(self, conversation_id: str, *, suggestion_id: str, outcome: Outcome,
                       edited_text: str | None = None) -> dict[str, Any]:
        """Record the agent's verdict on a suggestion; returns the stored ``suggestion.feedback`` event.

        Raises ``ConversationNotFound``, ``SuggestionNotFound``.
        """
        now = _now()
        defects: Recorded | None = None
        kind = "unknown"

        async def record(uow: UnitOfWork, step: Any) -> None:
            nonlocal kind, defects
            await uow.conversations.add_feedback(conversation_id, suggestion_id=suggestion_id,
                                                 outcome=outcome.value, edited_text=edited_text, ts=now)
            shown = step.state.suggestions.get(suggestion_id)
            kind = shown.type if shown is not None else kind
            if self.quality is not None:
                defects = await self.quality.record_feedback(
                    uow, conversation_id=conversation_id, suggestion_id=suggestion_id, outcome=outcome,
                    state=step.state)
            if self.webhooks and outcome in (Outcome.accepted, Outcome.edited):
                await uow.outbox.enqueue(OutboxTopic.suggestion_accepted, {
                    "conversation_id": conversation_id, "suggestion_id": suggestion_id, "outcome": outcome.value,
                    "edited_text": edited_text, "suggestion": _dump(shown) if shown is not None else None,
                })

        stored = await self._step(
            conversation_id,
            lambda s: self.engine.feedback(s, suggestion_id=suggestion_id, outcome=outcome.value,
                                           edited_text=edited_text, ts=now),
            frames=lambda step: [
                AckFrame(conversation_id=conversation_id, ref="feedback", suggestion_id=suggestion_id),
                EventFrame(conversation_id=conversation_id, event="suggestion.feedback",
                           data={"suggestion_id": suggestion_id, "outcome": outcome.value,
                                 "edited_text": edited_text},
                           actions=list(step.actions), state=step.state),
            ],
            extra=record,
        )
        self.metrics.feedback.labels(type=kind, outcome=outcome.value).inc()
        self._judge_quality(defects)
        return stored[-1]

    async def resolve(self, conversation_id: str, *, ts: datetime | None = None) -> dict[str, Any]:
        """The agent marks the problem solved; returns the stored ``conversation.resolved`` event
        (its actions may include a cross-sell, now that the problem is solved)."""
        now = _now()
        stored = await self._step(
            conversation_id,
            lambda s: self.engine.resolve(s, ts=ts or now, now=now),
            frames=lambda step: [
                AckFrame(conversation_id=conversation_id, ref="resolve"),
                EventFrame(conversation_id=conversation_id, event="conversation.resolved",
                           actions=list(step.actions), state=step.state),
            ],
        )
        return stored[-1]

    async def _apply_profile(self, lane: _Lane, conversation_id: str, state: ConversationState,
                             profile: CustomerProfile) -> None:
        """Engine.profile + event; the caller holds the lane's order locks."""
        step = self.engine.profile(state, profile)
        frame = EventFrame(conversation_id=conversation_id, event="profile.updated",
                           data={"customer_id": profile.id}, actions=list(step.actions), state=step.state)
        async with lane.emit:
            async with self.db.transaction() as uow:
                await uow.conversations.save_state(conversation_id, step.state)
                stored = await uow.conversations.append_frames(conversation_id, [frame])
            lane.state = step.state
            self._publish(lane, stored)

    async def upsert_profile(self, profile: CustomerProfile) -> list[str]:
        """Store a CRM profile and apply it to the customer's conversations; returns their ids."""
        async with self.db.transaction() as uow:
            await uow.customers.upsert(profile.id, profile)
            conversations = await uow.conversations.by_customer(profile.id)
        for record in conversations:
            await self._step(
                record.id, lambda s: self.engine.profile(s, profile),
                frames=lambda step, cid=record.id: [EventFrame(  # type: ignore[misc]
                    conversation_id=cid, event="profile.updated", data={"customer_id": profile.id},
                    actions=list(step.actions), state=step.state)],
            )
        return [c.id for c in conversations]

    async def order_event(self, customer_id: str, event: OrderEvent) -> list[dict[str, Any]]:
        """A CRM order/logistics event: Engine.order_event on each of the customer's conversations.

        Returns the stored ``order.<type>`` event frames (one per conversation), which are pushed
        to every console watching those conversations. The stored profile is updated too, so a
        conversation opened later starts from the new order facts.
        """
        now = _now()
        async with self.db.transaction() as uow:
            conversations = await uow.conversations.by_customer(customer_id)
            stored_profile = await uow.customers.get(customer_id)
        out: list[dict[str, Any]] = []
        latest: CustomerProfile | None = None
        for record in conversations:
            stored = await self._step(
                record.id, lambda s: self.engine.order_event(s, event, now),
                frames=lambda step, cid=record.id: [EventFrame(  # type: ignore[misc]
                    conversation_id=cid, event=f"order.{event.type}",
                    data={"customer_id": customer_id, **_dump(event)},
                    actions=list(step.actions), state=step.state)],
            )
            out.extend(stored)
            if latest is None:
                latest = ConversationState.model_validate(stored[-1]["state"]).customer
        if latest is None and stored_profile is not None:
            # No conversation to carry it: fold the event into the stored profile the same way.
            base = self.engine.new_conversation(f"crm:{customer_id}",
                                                CustomerProfile.model_validate(stored_profile.profile))
            latest = self.engine.order_event(base, event, now).state.customer
        if latest is not None and latest.id == customer_id:
            async with self.db.transaction() as uow:
                await uow.customers.upsert(customer_id, latest)
        return out

    # --- reads -----------------------------------------------------------------------------------------

    async def transcript(self, conversation_id: str) -> dict[str, Any]:
        """The conversation with its turns (analyses, actions), feedback and current state."""
        async with self.db.transaction() as uow:
            record = await uow.conversations.get(conversation_id)
            turns = await uow.conversations.turns(conversation_id)
            feedback = await uow.conversations.feedback(conversation_id)
        return {
            "conversation_id": record.id,
            "customer_id": record.customer_id,
            "last_seq": record.last_seq,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "state": record.state,
            "turns": [
                {"turn_id": t.turn_id, "role": t.role, "text": t.text, "ts": t.ts, "status": t.status.value,
                 "analysis": t.analysis, "actions": t.actions or [], "analysis_seq": t.analysis_seq,
                 "error": t.error}
                for t in turns
            ],
            "feedback": [f.model_dump(mode="json", exclude={"conversation_id"}) for f in feedback],
        }
