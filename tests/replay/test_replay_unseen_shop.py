"""A replay on a shop the project has never seen (tests/fixtures/shop_unseen: a pet-supplies shop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_build import UNSEEN_LOGS, UNSEEN_SHOP

from assist.cli import main
from assist.shop import load_shop

pytestmark = pytest.mark.usefixtures("reuse_runtime")


def test_replay_with_an_unseen_shop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(UNSEEN_LOGS), "--shop", str(UNSEEN_SHOP), "--out", str(tmp_path), "--json"])
    capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert code in (0, 1) and report["summary"]["input.failed_conversations"] == 0
    assert Path(report["shop"]["dir"]).resolve() == UNSEEN_SHOP.resolve()
    assert report["input"]["warnings"] == []            # every gold KB id is an entry of this shop
    shop = load_shop(UNSEEN_SHOP)
    kb_ids, skus = {e.id for e in shop.kb}, set(shop.catalog)
    turns = [json.loads(x) for x in (tmp_path / "turns.jsonl").read_text(encoding="utf-8").splitlines()]
    # Retrieval and cross-sell only ever use this shop's data, never the demo shop's.
    for t in turns:
        assert set(t["kb_ids"]) <= kb_ids
        for a in t["actions"]:
            assert a["sku"] is None or a["sku"] in skus
            assert a["kb_id"] is None or a["kb_id"] in kb_ids
    s = report["summary"]
    assert s["kb.n"] == 4 and s["kb.recall_at_5"] is not None and s["kb.recall_at_5"] >= 0.5
    assert s["intent.n"] == 10 and s["qa.n"] == 6
    # The device defect after failed guidance is escalated on this shop too.
    p1 = next(t for t in turns if t["conversation_id"] == "p1" and t["turn_id"] == "t3")
    assert "escalate" in [a["type"] for a in p1["actions"]]
