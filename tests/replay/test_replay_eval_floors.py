"""The dev set meets eval/floors.yaml: the whole system (pipeline + policy) replayed on
eval/conversations.jsonl, gated like `assist replay --floors` does. Slow: ~450 turns."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_build import REPO, Loaded

from assist.replay.floors import check_floors, failed, load_floors
from assist.replay.parse import read_logs
from assist.replay.run import evaluate

pytestmark = pytest.mark.slow

EVAL = REPO / "eval" / "conversations.jsonl"
FLOORS = REPO / "eval" / "floors.yaml"


def test_dev_set_meets_its_floors(demo: Loaded) -> None:
    if not EVAL.exists() or not FLOORS.exists():
        pytest.skip("eval/conversations.jsonl or eval/floors.yaml missing")
    parsed = read_logs(EVAL)
    report, _ = evaluate(parsed, pipeline=demo.runtime.pipeline, engine=demo.engine, shop=demo.runtime.shop)
    checks = check_floors(report["summary"], load_floors(Path(FLOORS)))
    assert not failed(checks), "\n".join(str(c) for c in failed(checks))
