"""KbRepo on SQLite and PostgreSQL: versions, history, retire, seed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from assist.errors import ConflictError, KbEntryExists, KbEntryNotFound
from assist.shop import KbEntry, KbStatus
from assist.store import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2025, 11, 1, tzinfo=UTC)


def _entry(entry_id: str = "kb-diaper-rash", **kw: object) -> KbEntry:
    data: dict[str, object] = {
        "id": entry_id,
        "question": "纸尿裤会不会红屁屁？",
        "similar": ["宝宝用了屁屁红了", "尿不湿起疹子"],
        "answer": "建议勤换并配合护臀霜使用。",
        "category": "muying/diaper",
        "skus": ["DIAPER-L"],
        "tags": ["红屁屁"],
    }
    data.update(kw)
    return KbEntry.model_validate(data)


async def test_create_get_and_duplicate(db: Database) -> None:
    async with db.transaction() as uow:
        saved = await uow.kb.create(_entry(version=7), now=T0)
    assert saved.version == 1 and saved.updated_at == T0, "the store owns versions"
    async with db.transaction() as uow:
        assert await uow.kb.get("kb-diaper-rash") == saved
        assert await uow.kb.find("missing") is None
    with pytest.raises(KbEntryExists):
        async with db.transaction() as uow:
            await uow.kb.create(_entry())
    with pytest.raises(KbEntryNotFound):
        async with db.transaction() as uow:
            await uow.kb.get("missing")


async def test_upsert_bumps_version_and_keeps_every_version_in_history(db: Database) -> None:
    async with db.transaction() as uow:
        v1 = await uow.kb.upsert(_entry())
    async with db.transaction() as uow:
        v2 = await uow.kb.upsert(_entry(answer="勤换尿布，保持干爽，必要时用护臀霜。"))
    async with db.transaction() as uow:
        same = await uow.kb.upsert(_entry(answer="勤换尿布，保持干爽，必要时用护臀霜。", version=99))
        v3 = await uow.kb.upsert(_entry(answer="v3", status=KbStatus.draft))
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert same == v2, "saving identical content is not a new version (a retried PUT)"
    async with db.transaction() as uow:
        history = await uow.kb.history("kb-diaper-rash")
        current = await uow.kb.get("kb-diaper-rash")
    assert [h.version for h in history] == [1, 2, 3]
    assert [h.answer for h in history] == [v1.answer, v2.answer, "v3"]
    assert current == v3 and current.status is KbStatus.draft


async def test_expected_version_refuses_a_lost_update(db: Database) -> None:
    async with db.transaction() as uow:
        await uow.kb.upsert(_entry(), expected_version=0)
        await uow.kb.upsert(_entry(answer="second"), expected_version=1)
    with pytest.raises(ConflictError):
        async with db.transaction() as uow:
            await uow.kb.upsert(_entry(answer="stale editor"), expected_version=1)
    async with db.transaction() as uow:
        assert (await uow.kb.get("kb-diaper-rash")).answer == "second"
        assert len(await uow.kb.history("kb-diaper-rash")) == 2


async def test_retire_keeps_the_entry_and_its_history(db: Database) -> None:
    async with db.transaction() as uow:
        await uow.kb.upsert(_entry())
        await uow.kb.upsert(_entry("kb-other", question="发票怎么开？", answer="在订单页申请电子发票。"))
    async with db.transaction() as uow:
        retired = await uow.kb.retire("kb-diaper-rash")
        again = await uow.kb.retire("kb-diaper-rash")
    assert retired.status is KbStatus.retired and retired.version == 2
    assert again == retired, "retiring twice does not mint versions"
    async with db.transaction() as uow:
        assert [e.id for e in await uow.kb.list_entries()] == ["kb-other"]
        assert [e.id for e in await uow.kb.list_entries(include_retired=True)] == ["kb-diaper-rash", "kb-other"]
        assert [e.id for e in await uow.kb.list_entries(status=KbStatus.retired)] == ["kb-diaper-rash"]
        assert [h.status for h in await uow.kb.history("kb-diaper-rash")] == [KbStatus.published, KbStatus.retired]
    with pytest.raises(KbEntryNotFound):
        async with db.transaction() as uow:
            await uow.kb.retire("missing")
    with pytest.raises(KbEntryNotFound):
        async with db.transaction() as uow:
            await uow.kb.history("missing")


async def test_seed_imports_file_versions_and_never_overwrites_newer_store_edits(db: Database) -> None:
    shop = [_entry("a", version=3), _entry("b"), _entry("c", version=2)]
    async with db.transaction() as uow:
        assert await uow.kb.seed(shop) == 3
        assert await uow.kb.seed(shop) == 0, "seeding twice is a no-op"
    async with db.transaction() as uow:
        edited = await uow.kb.upsert(_entry("b", answer="edited through the API"))
    # The file moves on: "a" edited offline to v4, "b" unchanged at v1 (the store has v2).
    async with db.transaction() as uow:
        written = await uow.kb.seed([_entry("a", version=4, answer="file v4"), _entry("b"), _entry("d")])
    assert written == 2
    async with db.transaction() as uow:
        a, b = await uow.kb.get("a"), await uow.kb.get("b")
        assert (a.version, a.answer) == (4, "file v4")
        assert b == edited
        assert [h.version for h in await uow.kb.history("a")] == [3, 4]
        assert [e.id for e in await uow.kb.list_entries()] == ["a", "b", "c", "d"]
