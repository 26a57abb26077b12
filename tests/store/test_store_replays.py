"""ReplayRepo on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from assist.errors import ConflictError, ReplayNotFound
from assist.store import Database, ReplayStatus

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_replay_lifecycle_round_trip(db: Database) -> None:
    async with db.transaction() as uow:
        run = await uow.replays.create(total=60, params={"shop": "kb_data", "file": "conversations.jsonl"})
    assert run.status is ReplayStatus.queued and run.done == 0 and len(run.id) == 32
    async with db.transaction() as uow:
        await uow.replays.update_progress(run.id, done=10, errors=1)
        mid = await uow.replays.update_progress(run.id, done=30)
    assert (mid.status, mid.done, mid.errors, mid.total) == (ReplayStatus.running, 30, 1, 60)
    report = {"format": 1, "intent": {"accuracy": 0.83, "confusion": [[1, 0], [0, 1]]}, "note": "意图"}
    async with db.transaction() as uow:
        await uow.replays.update_progress(run.id, done=60)
        done = await uow.replays.finish(run.id, report)
    assert done.status is ReplayStatus.done and done.finished_at is not None
    async with db.transaction() as uow:
        got = await uow.replays.get(run.id)
        listed = await uow.replays.list_replays()
    assert got.report == report and got.params["shop"] == "kb_data"
    assert [r.id for r in listed] == [run.id]
    with pytest.raises(ConflictError):
        async with db.transaction() as uow:
            await uow.replays.update_progress(run.id, done=61)


async def test_failed_replay_and_unknown_id(db: Database) -> None:
    async with db.transaction() as uow:
        run = await uow.replays.create(replay_id="r-1")
        failed = await uow.replays.fail("r-1", "line 3: not JSON")
    assert run.id == "r-1" and failed.status is ReplayStatus.failed and failed.error == "line 3: not JSON"
    with pytest.raises(ConflictError):
        async with db.transaction() as uow:
            await uow.replays.finish("r-1", {})
    with pytest.raises(ReplayNotFound):
        async with db.transaction() as uow:
            await uow.replays.get("nope")
