"""ConversationRepo on SQLite and PostgreSQL: conversations, frames, turns, feedback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

from assist.errors import ConflictError, ConversationNotFound
from assist.store import Database, FeedbackOutcome, TurnStatus, create_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2025, 11, 24, 12, 0, tzinfo=UTC)


async def _conversation(db: Database, cid: str = "c1", **kw: object) -> None:
    async with db.transaction() as uow:
        await uow.conversations.ensure(cid, **kw)  # type: ignore[arg-type]


async def test_ensure_creates_once_and_round_trips_state(db: Database) -> None:
    state = {"conversation_id": "c1", "stage": "opening", "sentiment_trend": [-0.5, 0.25], "note": "红屁屁"}
    async with db.transaction() as uow:
        rec, created = await uow.conversations.ensure("c1", customer_id=None, initial_state=state)
    assert created and rec.state == state and rec.last_seq == 0
    async with db.transaction() as uow:
        again, created = await uow.conversations.ensure("c1", customer_id="u1", initial_state={"other": 1})
    assert not created
    assert again.state == state, "an existing conversation keeps its state"
    assert again.customer_id == "u1", "a customer id learnt later is recorded"
    async with db.transaction() as uow:
        await uow.conversations.save_state("c1", {"stage": "solving"})
        assert (await uow.conversations.get("c1")).state == {"stage": "solving"}
        assert [c.id for c in await uow.conversations.by_customer("u1")] == ["c1"]


async def test_concurrent_ensure_of_a_new_id_yields_one_row(db: Database) -> None:
    async def ensure() -> bool:
        async with db.transaction() as uow:
            return (await uow.conversations.ensure("race", initial_state={}))[1]

    created = await asyncio.gather(*(ensure() for _ in range(5)))
    assert sorted(created) == [False, False, False, False, True]


async def test_unknown_conversation_raises_not_found(db: Database) -> None:
    with pytest.raises(ConversationNotFound):
        async with db.transaction() as uow:
            await uow.conversations.get("nope")
    with pytest.raises(ConversationNotFound):
        async with db.transaction() as uow:
            await uow.conversations.save_state("nope", {})
    with pytest.raises(ConversationNotFound):
        async with db.transaction() as uow:
            await uow.conversations.append_frame("nope", {"type": "event"})
    with pytest.raises(ConversationNotFound):  # translated from the foreign-key IntegrityError
        async with db.transaction() as uow:
            await uow.conversations.insert_turn("nope", turn_id="t1", role="customer", text="在吗")
    with pytest.raises(ConversationNotFound):
        async with db.transaction() as uow:
            await uow.conversations.add_feedback("nope", suggestion_id="s", outcome="accepted")


async def test_insert_turn_is_idempotent_by_turn_id(db: Database) -> None:
    await _conversation(db)
    async with db.transaction() as uow:
        first, created = await uow.conversations.insert_turn(
            "c1", turn_id="t1", role="customer", text="纸尿裤会不会红屁屁？", ts=T0
        )
    assert created and first.status is TurnStatus.received and first.ts == T0
    async with db.transaction() as uow:
        again, created = await uow.conversations.insert_turn(
            "c1", turn_id="t1", role="customer", text="a different text on retry", ts=T0 + timedelta(seconds=5)
        )
    assert not created
    assert again == first, "a repeated turn_id returns the stored row untouched"
    async with db.transaction() as uow:
        assert len(await uow.conversations.turns("c1")) == 1


async def test_concurrent_inserts_of_one_turn_store_it_once(db: Database) -> None:
    await _conversation(db)

    async def insert() -> bool:
        async with db.transaction() as uow:
            return (await uow.conversations.insert_turn("c1", turn_id="dup", role="customer", text="x"))[1]

    created = await asyncio.gather(*(insert() for _ in range(4)))
    assert created.count(True) == 1
    async with db.transaction() as uow:
        assert [t.turn_id for t in await uow.conversations.turns("c1")] == ["dup"]


async def test_same_turn_id_in_two_conversations_are_distinct(db: Database) -> None:
    await _conversation(db, "a")
    await _conversation(db, "b")
    async with db.transaction() as uow:
        assert (await uow.conversations.insert_turn("a", turn_id="t1", role="customer", text="x"))[1]
        assert (await uow.conversations.insert_turn("b", turn_id="t1", role="customer", text="y"))[1]


async def test_frames_get_gap_free_seqs_and_resume_after_last_seq(db: Database) -> None:
    await _conversation(db)
    await _conversation(db, "other")
    async with db.transaction() as uow:
        stored = await uow.conversations.append_frames(
            "c1", [{"type": "ack", "v": 1}, {"type": "analysis", "v": 1, "text": "声音太小"}]
        )
        await uow.conversations.append_frame("other", {"type": "event"})
        third = await uow.conversations.append_frame("c1", {"type": "event", "seq": None})
    assert [f["seq"] for f in stored] == [1, 2] and third["seq"] == 3
    async with db.transaction() as uow:
        after = await uow.conversations.frames_after("c1", 1)
        assert [(f["seq"], f["type"]) for f in after] == [(2, "analysis"), (3, "event")]
        assert after[0]["text"] == "声音太小"
        assert await uow.conversations.frames_after("c1", 3) == []
        assert [f["seq"] for f in await uow.conversations.frames_after("c1", 0, limit=2)] == [1, 2]
        assert (await uow.conversations.get_frame("c1", 2)) == after[0]
        assert (await uow.conversations.get("c1")).last_seq == 3
        assert [f["seq"] for f in await uow.conversations.frames_after("other", 0)] == [1]


async def test_concurrent_appends_never_share_a_seq(db: Database) -> None:
    await _conversation(db)

    async def append(i: int) -> int:
        async with db.transaction() as uow:
            return (await uow.conversations.append_frame("c1", {"type": "event", "i": i}))["seq"]

    seqs = await asyncio.gather(*(append(i) for i in range(10)))
    assert sorted(seqs) == list(range(1, 11))


async def test_frames_survive_reopening_the_database(db: Database) -> None:
    await _conversation(db)
    async with db.transaction() as uow:
        await uow.conversations.append_frames("c1", [{"type": "ack"}, {"type": "analysis"}])
    # A second engine on the same database stands in for the restarted service.
    reopened = Database(create_engine(db.url, schema=db.schema))
    try:
        async with reopened.transaction() as uow:
            assert [f["seq"] for f in await uow.conversations.frames_after("c1", 0)] == [1, 2]
            assert (await uow.conversations.append_frame("c1", {"type": "event"}))["seq"] == 3
    finally:
        await reopened.close()


async def test_complete_turn_writes_state_frames_and_result_atomically(db: Database) -> None:
    await _conversation(db)
    async with db.transaction() as uow:
        await uow.conversations.insert_turn("c1", turn_id="t1", role="customer", text="声音太小", ts=T0)
        ack = await uow.conversations.append_frame("c1", {"type": "ack", "turn_id": "t1"})
    analysis = {"intent": {"label": "usage_howto", "confidence": 0.91}, "text": "声音太小"}
    actions = [{"id": "t1:answer:0", "type": "answer", "score": 0.8}]
    async with db.transaction() as uow:
        frames = await uow.conversations.complete_turn(
            "c1", "t1", state={"stage": "solving"}, analysis=analysis, actions=actions,
            frames=[{"type": "analysis", "turn_id": "t1"}],
        )
    async with db.transaction() as uow:
        turn = await uow.conversations.get_turn("c1", "t1")
    assert turn is not None
    assert turn.status is TurnStatus.processed and turn.processed_at is not None
    assert turn.analysis == analysis and turn.actions == actions
    assert turn.analysis_seq == frames[0]["seq"] == ack["seq"] + 1
    async with db.transaction() as uow:
        assert (await uow.conversations.get("c1")).state == {"stage": "solving"}
        assert await uow.conversations.pending_turns() == []
        # The repeated-turn path: the stored turn points at its stored result frame.
        stored = await uow.conversations.get_turn("c1", "t1")
        assert stored is not None and stored.analysis_seq is not None
        assert (await uow.conversations.get_frame("c1", stored.analysis_seq)) == frames[0]


async def test_completing_a_turn_twice_rolls_the_second_back(db: Database) -> None:
    await _conversation(db)
    async with db.transaction() as uow:
        await uow.conversations.insert_turn("c1", turn_id="t1", role="customer", text="x")
        await uow.conversations.complete_turn("c1", "t1", state={"n": 1}, analysis={"a": 1},
                                              frames=[{"type": "analysis"}])
    with pytest.raises(ConflictError):
        async with db.transaction() as uow:
            await uow.conversations.complete_turn("c1", "t1", state={"n": 2}, analysis={"a": 2},
                                                  frames=[{"type": "analysis"}])
    async with db.transaction() as uow:
        conv = await uow.conversations.get("c1")
        assert conv.state == {"n": 1} and conv.last_seq == 1, "the duplicate's state and frame were discarded"
        assert len(await uow.conversations.frames_after("c1", 0)) == 1


async def test_pending_turns_are_the_unprocessed_ones_in_arrival_order(db: Database) -> None:
    await _conversation(db, "a")
    await _conversation(db, "b")
    async with db.transaction() as uow:
        for cid, tid in [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2"), ("a", "3")]:
            await uow.conversations.insert_turn(cid, turn_id=tid, role="customer", text=f"{cid}{tid}")
    async with db.transaction() as uow:
        await uow.conversations.mark_turn_processed("a", "1", analysis={"ok": True})
        await uow.conversations.mark_turn_failed("b", "2", "pipeline exploded")
    async with db.transaction() as uow:
        pending = await uow.conversations.pending_turns()
        failed = await uow.conversations.get_turn("b", "2")
    assert [(t.conversation_id, t.turn_id) for t in pending] == [("b", "1"), ("a", "2"), ("a", "3")]
    assert [t.position for t in pending] == sorted(t.position for t in pending)
    assert failed is not None and failed.status is TurnStatus.failed and failed.error == "pipeline exploded"
    async with db.transaction() as uow:
        assert [t.turn_id for t in await uow.conversations.pending_turns(limit=1)] == ["1"]
        assert [t.turn_id for t in await uow.conversations.turns("a")] == ["1", "2", "3"]


async def test_feedback_round_trip(db: Database) -> None:
    await _conversation(db)
    async with db.transaction() as uow:
        await uow.conversations.add_feedback("c1", suggestion_id="t1:cross_sell:0", outcome="accepted", ts=T0)
        edited = await uow.conversations.add_feedback(
            "c1", suggestion_id="t2:answer:0", outcome=FeedbackOutcome.edited, edited_text="您好，音量键在右侧", ts=T0
        )
    assert edited.outcome is FeedbackOutcome.edited and edited.ts == T0
    async with db.transaction() as uow:
        items = await uow.conversations.feedback("c1")
    assert [(f.suggestion_id, f.outcome.value, f.edited_text) for f in items] == [
        ("t1:cross_sell:0", "accepted", None),
        ("t2:answer:0", "edited", "您好，音量键在右侧"),
    ]
    with pytest.raises(ValueError):
        async with db.transaction() as uow:
            await uow.conversations.add_feedback("c1", suggestion_id="s", outcome="loved")


async def test_timestamps_come_back_as_aware_utc(db: Database) -> None:
    await _conversation(db)
    cst = datetime(2025, 11, 24, 20, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    async with db.transaction() as uow:
        await uow.conversations.insert_turn("c1", turn_id="t", role="agent", text="x", ts=cst)
    async with db.transaction() as uow:
        stored = await uow.conversations.get_turn("c1", "t")
    assert stored is not None and stored.ts == cst and stored.ts.tzinfo == UTC
    assert stored.created_at.tzinfo == UTC


async def test_frames_and_actions_may_be_pydantic_models_or_hold_datetimes(db: Database) -> None:
    class Action(BaseModel):
        id: str
        type: str
        evidence: tuple[str, ...] = ()

    class AnalysisFrame(BaseModel):
        type: str = "analysis"
        v: int = 1
        seq: int | None = None
        actions: list[Action]

    await _conversation(db)
    action = Action(id="t1:cross_sell:0", type="cross_sell", evidence=("bought A", "红屁屁"))
    async with db.transaction() as uow:
        await uow.conversations.insert_turn("c1", turn_id="t1", role="customer", text="x")
        event = await uow.conversations.append_frame("c1", {"type": "event", "at": T0, "status": TurnStatus.received})
        (frame,) = await uow.conversations.complete_turn(
            "c1", "t1", state={"at": T0}, analysis=None, actions=[action], frames=[AnalysisFrame(actions=[action])]
        )
        turn = await uow.conversations.get_turn("c1", "t1")
    assert turn is not None
    assert event == {"type": "event", "at": "2025-11-24T12:00:00Z", "status": "received", "seq": 1}
    assert frame["seq"] == 2 and frame["actions"][0]["evidence"] == ["bought A", "红屁屁"]
    assert turn.actions == [{"id": "t1:cross_sell:0", "type": "cross_sell", "evidence": ["bought A", "红屁屁"]}]
    assert turn.analysis is None
