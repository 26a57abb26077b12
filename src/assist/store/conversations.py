"""The conversation aggregate: the conversation row, its server frames, turns and feedback.

One repository for the four tables because they change together: processing a turn saves the
new state, stores the ``analysis`` frame and marks the turn processed, and those writes must
commit atomically (see ``complete_turn``) or a crash could leave a processed turn without the
frame that resume() would replay.

Every method runs inside the caller's session and does not commit; use
``Database.transaction()`` so the unit commits before the service acknowledges anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assist.errors import ConflictError, ConversationNotFound, NotFoundError
from assist.store._sql import (
    ConstraintKind,
    as_utc,
    constraint_kind,
    insert_ignoring_conflicts,
    to_json,
    to_json_list,
    utcnow,
)
from assist.store.models import ConversationRow, FeedbackRow, FrameRow, TurnRow
from assist.store.records import (
    ConversationRecord,
    FeedbackOutcome,
    FeedbackRecord,
    TurnRecord,
    TurnStatus,
)

Frame = Mapping[str, Any] | BaseModel

# The per-turn statements are built on the tables, not the ORM classes: an UPDATE/INSERT against
# an ORM entity runs SQLAlchemy's ORM bulk-persistence path, which cost about a third of the event
# loop's time under load (bench/ws_load.py, py-spy); against the Table it is plain Core.
_CONV = ConversationRow.__table__
_TURN = TurnRow.__table__
_FRAME = FrameRow.__table__


def _conversation(row: ConversationRow) -> ConversationRecord:
    return ConversationRecord(
        id=row.id, customer_id=row.customer_id, state=row.state, last_seq=row.last_seq,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _turn(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        conversation_id=row.conversation_id, turn_id=row.turn_id, role=row.role, text=row.text,
        ts=row.ts, status=TurnStatus(row.status), analysis=row.analysis, actions=row.actions,
        analysis_seq=row.analysis_seq, error=row.error, position=row.id,
        created_at=row.created_at, processed_at=row.processed_at,
    )


def _processed(analysis: Mapping[str, Any] | BaseModel | None, actions: Sequence[Any], analysis_seq: int | None,
               now: datetime | None = None) -> dict[str, Any]:
    """The column values of a turn moving to ``processed``."""
    return {"status": TurnStatus.processed.value, "analysis": to_json(analysis) if analysis is not None else None,
            "actions": to_json_list(actions), "analysis_seq": analysis_seq,
            "processed_at": as_utc(now) if now else utcnow()}


def _feedback(row: FeedbackRow) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id, conversation_id=row.conversation_id, suggestion_id=row.suggestion_id,
        outcome=FeedbackOutcome(row.outcome), edited_text=row.edited_text, ts=row.ts,
    )


class ConversationRepo:
    """One tenant's conversations, frames, turns and feedback, in the caller's session.

    Every read and write is scoped to ``tenant``: another tenant's conversation with the same id
    is a different row, invisible here. Raises ``ConversationNotFound`` when a write names a conversation that does not exist
    (call ``ensure`` first), ``ConflictError`` when a turn is completed twice.
    """

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self._s = session
        self.tenant = tenant

    # --- conversations -----------------------------------------------------------------------

    async def ensure(
        self,
        conversation_id: str,
        *,
        customer_id: str | None = None,
        initial_state: Mapping[str, Any] | BaseModel | None = None,
        now: datetime | None = None,
    ) -> tuple[ConversationRecord, bool]:
        """Return the conversation, creating it with ``initial_state`` if absent; ``(record, created)``.

        Safe under races: two concurrent ``hello`` for a new id both get the same row. A
        customer id given for an existing conversation that has none is recorded.
        """
        now = as_utc(now) if now else utcnow()
        stmt = insert_ignoring_conflicts(self._s, ConversationRow, ["tenant_id", "id"]).values(
            tenant_id=self.tenant, id=conversation_id, customer_id=customer_id, state=to_json(initial_state),
            last_seq=0, created_at=now, updated_at=now,
        )
        created = (await self._s.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]
        if not created and customer_id is not None:
            await self._s.execute(
                update(ConversationRow)
                .where(ConversationRow.tenant_id == self.tenant, ConversationRow.id == conversation_id,
                       ConversationRow.customer_id.is_(None))
                .values(customer_id=customer_id)
            )
        return await self.get(conversation_id), created

    async def find(self, conversation_id: str) -> ConversationRecord | None:
        row = (
            await self._s.execute(
                select(ConversationRow)
                .where(ConversationRow.tenant_id == self.tenant, ConversationRow.id == conversation_id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        return _conversation(row) if row else None

    async def get(self, conversation_id: str) -> ConversationRecord:
        """The conversation; raises ``ConversationNotFound``."""
        record = await self.find(conversation_id)
        if record is None:
            raise ConversationNotFound(f"conversation {conversation_id!r} not found")
        return record

    async def by_customer(self, customer_id: str, *, limit: int = 50) -> list[ConversationRecord]:
        """The customer's conversations, most recently active first (where CRM events are pushed)."""
        rows = await self._s.scalars(
            select(ConversationRow)
            .where(ConversationRow.tenant_id == self.tenant, ConversationRow.customer_id == customer_id)
            .order_by(ConversationRow.updated_at.desc(), ConversationRow.id)
            .limit(limit)
        )
        return [_conversation(r) for r in rows]

    async def save_state(
        self, conversation_id: str, state: Mapping[str, Any] | BaseModel, *, now: datetime | None = None
    ) -> None:
        """Replace the stored ConversationState; raises ``ConversationNotFound``."""
        result = await self._s.execute(
            update(_CONV)
            .where(self._conv(conversation_id))
            .values(state=to_json(state), updated_at=as_utc(now) if now else utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConversationNotFound(f"conversation {conversation_id!r} not found")

    def _conv(self, conversation_id: str) -> Any:
        return (_CONV.c.tenant_id == self.tenant) & (_CONV.c.id == conversation_id)

    # --- frames ------------------------------------------------------------------------------

    async def append_frames(
        self, conversation_id: str, frames: Sequence[Frame], *, state: Mapping[str, Any] | BaseModel | None = None,
    ) -> list[dict[str, Any]]:
        """Give each frame the conversation's next ``seq``, store it, and return the stored frames.

        One ``UPDATE ... RETURNING`` reserves the whole block of seqs, so seqs are gap-free and
        never reused even with several writers; the row lock it takes also orders concurrent
        appends on PostgreSQL. ``state``, if given, is saved by that same UPDATE (as
        ``save_state`` would). Raises ``ConversationNotFound``.
        """
        if not frames:
            if state is not None:
                await self.save_state(conversation_id, state)
            return []
        values: dict[str, Any] = {"last_seq": _CONV.c.last_seq + len(frames)}
        if state is not None:
            values.update(state=to_json(state), updated_at=utcnow())
        last = (
            await self._s.execute(
                update(_CONV).where(self._conv(conversation_id)).values(**values).returning(_CONV.c.last_seq)
            )
        ).scalar_one_or_none()
        if last is None:
            raise ConversationNotFound(f"conversation {conversation_id!r} not found")
        first = last - len(frames) + 1
        now = utcnow()
        stored = [{**to_json(f), "seq": first + i} for i, f in enumerate(frames)]
        await self._s.execute(
            insert(_FRAME),
            [{"tenant_id": self.tenant, "conversation_id": conversation_id, "seq": f["seq"], "frame": f, "created_at": now} for f in stored],
        )
        return stored

    async def append_frame(self, conversation_id: str, frame: Frame) -> dict[str, Any]:
        """``append_frames`` for one frame."""
        return (await self.append_frames(conversation_id, [frame]))[0]

    async def frames_after(
        self, conversation_id: str, last_seq: int, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored frames with ``seq > last_seq`` in seq order: what ``resume(last_seq)`` replays."""
        stmt = (
            select(FrameRow.frame)
            .where(FrameRow.tenant_id == self.tenant, FrameRow.conversation_id == conversation_id,
                   FrameRow.seq > last_seq)
            .order_by(FrameRow.seq)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(await self._s.scalars(stmt))

    async def get_frame(self, conversation_id: str, seq: int) -> dict[str, Any] | None:
        return await self._s.scalar(
            select(FrameRow.frame).where(FrameRow.tenant_id == self.tenant, FrameRow.conversation_id == conversation_id,
                                         FrameRow.seq == seq)
        )

    # --- turns -------------------------------------------------------------------------------

    async def insert_turn(
        self,
        conversation_id: str,
        *,
        turn_id: str,
        role: str,
        text: str,
        ts: datetime | None = None,
    ) -> tuple[TurnRecord, bool]:
        """Store a turn as ``received``; ``(record, created)``.

        A repeated ``turn_id`` returns the stored row (with its analysis if processed) and
        ``created=False``: the caller answers from it instead of processing twice. Commit the
        unit before acking, so a crash after the ack cannot lose the turn. Raises
        ``ConversationNotFound``.
        """
        now = utcnow()
        at = as_utc(ts) if ts else now
        # RETURNING gives the new row's id when inserted and nothing on a conflict, so the common
        # case (a new turn) needs no read back: one round trip less on the ack's critical path.
        stmt = (
            insert_ignoring_conflicts(self._s, _TURN, ["tenant_id", "conversation_id", "turn_id"])
            .values(tenant_id=self.tenant, conversation_id=conversation_id, turn_id=turn_id, role=role, text=text,
                    ts=at, status=TurnStatus.received.value, created_at=now)
            .returning(_TURN.c.id)
        )
        try:
            position = (await self._s.execute(stmt)).scalar_one_or_none()
        except IntegrityError as exc:
            if constraint_kind(exc) is ConstraintKind.foreign_key:
                raise ConversationNotFound(f"conversation {conversation_id!r} not found") from exc
            raise ConflictError(f"turn {turn_id!r} could not be stored: {exc.orig}") from exc
        if position is not None:
            return TurnRecord(conversation_id=conversation_id, turn_id=turn_id, role=role, text=text, ts=at,
                              status=TurnStatus.received, position=position, created_at=now), True
        record = await self.get_turn(conversation_id, turn_id)
        assert record is not None  # the conflicting row exists, in this transaction
        return record, False

    async def get_turn(self, conversation_id: str, turn_id: str) -> TurnRecord | None:
        row = (
            await self._s.execute(
                select(TurnRow)
                .where(TurnRow.tenant_id == self.tenant, TurnRow.conversation_id == conversation_id,
                       TurnRow.turn_id == turn_id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        return _turn(row) if row else None

    async def mark_turn_processed(
        self,
        conversation_id: str,
        turn_id: str,
        *,
        analysis: Mapping[str, Any] | BaseModel | None,
        actions: Sequence[Any] = (),
        analysis_seq: int | None = None,
        now: datetime | None = None,
    ) -> TurnRecord:
        """Record a turn's result and move it from ``received`` to ``processed``.

        Raises ``ConflictError`` when the turn is not ``received`` any more (someone else
        processed it: letting the error roll back the caller's unit discards this duplicate
        result with its frames and state), ``NotFoundError`` when there is no such turn.
        """
        return await self._after_transition(
            conversation_id, turn_id,
            await self._leave_received(conversation_id, turn_id, _processed(analysis, actions, analysis_seq, now)),
        )

    async def mark_turn_failed(
        self, conversation_id: str, turn_id: str, error: str, *, now: datetime | None = None
    ) -> TurnRecord:
        """Park a turn whose processing raised, so start-up recovery does not loop on it."""
        values = {"status": TurnStatus.failed.value, "error": error[:4000],
                  "processed_at": as_utc(now) if now else utcnow()}
        return await self._after_transition(conversation_id, turn_id,
                                            await self._leave_received(conversation_id, turn_id, values))

    async def _leave_received(self, conversation_id: str, turn_id: str, values: dict[str, Any]) -> int:
        """Move a ``received`` turn on with ``values`` (no read back); returns the rowcount, 0 when
        the turn is missing or not ``received`` any more."""
        result = await self._s.execute(
            update(_TURN)
            .where(
                _TURN.c.tenant_id == self.tenant,
                _TURN.c.conversation_id == conversation_id,
                _TURN.c.turn_id == turn_id,
                _TURN.c.status == TurnStatus.received.value,
            )
            .values(**values)
        )
        rowcount: int = result.rowcount  # type: ignore[attr-defined]
        return rowcount

    async def _after_transition(self, conversation_id: str, turn_id: str, rowcount: int) -> TurnRecord:
        record = await self.get_turn(conversation_id, turn_id)
        if record is None:
            raise NotFoundError(f"turn {turn_id!r} of conversation {conversation_id!r} not found")
        if rowcount != 1:
            raise ConflictError(f"turn {turn_id!r} is already {record.status.value}")
        return record

    async def complete_turn(
        self,
        conversation_id: str,
        turn_id: str,
        *,
        state: Mapping[str, Any] | BaseModel,
        analysis: Mapping[str, Any] | BaseModel | None,
        actions: Sequence[Any] = (),
        frames: Sequence[Frame] = (),
        result_frame: int | None = 0,
    ) -> list[dict[str, Any]]:
        """Everything a processed turn writes, in one call: new state, frames, turn result.

        ``frames`` get seqs as in ``append_frames``; ``result_frame`` is the index in ``frames``
        of the frame that carries the turn's result (its seq is stored on the turn so a
        repeated turn_id can be answered with it), or None. Returns the stored frames. Three
        statements: the conversation row (seqs + state), the frames, the turn. Raises as
        ``mark_turn_processed``.
        """
        stored = await self.append_frames(conversation_id, frames, state=state)
        seq = stored[result_frame]["seq"] if stored and result_frame is not None else None
        if await self._leave_received(conversation_id, turn_id, _processed(analysis, actions, seq)) != 1:
            await self._after_transition(conversation_id, turn_id, 0)  # raises: says why it missed
        return stored

    async def turns(self, conversation_id: str) -> list[TurnRecord]:
        """The conversation's turns in arrival order (the transcript)."""
        rows = await self._s.scalars(
            select(TurnRow)
            .where(TurnRow.tenant_id == self.tenant, TurnRow.conversation_id == conversation_id)
            .order_by(TurnRow.id)
        )
        return [_turn(r) for r in rows]

    async def pending_turns(self, *, limit: int | None = None) -> list[TurnRecord]:
        """Turns acked but never processed (the process died in between), in arrival order.

        The service re-runs these at start-up before accepting traffic; arrival order keeps
        each conversation's turns in order.
        """
        stmt = (select(TurnRow)
                .where(TurnRow.tenant_id == self.tenant, TurnRow.status == TurnStatus.received.value)
                .order_by(TurnRow.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_turn(r) for r in await self._s.scalars(stmt)]

    # --- feedback ----------------------------------------------------------------------------

    async def add_feedback(
        self,
        conversation_id: str,
        *,
        suggestion_id: str,
        outcome: FeedbackOutcome | str,
        edited_text: str | None = None,
        ts: datetime | None = None,
    ) -> FeedbackRecord:
        """Record the agent's verdict on a suggestion; raises ``ConversationNotFound``."""
        row = FeedbackRow(
            tenant_id=self.tenant, conversation_id=conversation_id, suggestion_id=suggestion_id,
            outcome=FeedbackOutcome(outcome).value, edited_text=edited_text,
            ts=as_utc(ts) if ts else utcnow(),
        )
        self._s.add(row)
        try:
            await self._s.flush()
        except IntegrityError as exc:
            if constraint_kind(exc) is ConstraintKind.foreign_key:
                raise ConversationNotFound(f"conversation {conversation_id!r} not found") from exc
            raise ConflictError(f"feedback could not be stored: {exc.orig}") from exc
        return _feedback(row)

    async def feedback(self, conversation_id: str) -> list[FeedbackRecord]:
        rows = await self._s.scalars(
            select(FeedbackRow)
            .where(FeedbackRow.tenant_id == self.tenant, FeedbackRow.conversation_id == conversation_id)
            .order_by(FeedbackRow.id)
        )
        return [_feedback(r) for r in rows]


async def tenants_with_pending_turns(session: AsyncSession) -> list[str]:
    """Tenants that have turns acked but never processed: whose services start-up recovery must build."""
    rows = await session.scalars(
        select(TurnRow.tenant_id).where(TurnRow.status == TurnStatus.received.value).distinct()
    )
    return sorted(rows)
