"""End-to-end replay through the real pipeline and engine, in memory."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay_build import DEMO_LOGS, Loaded

from assist.replay.parse import parse_logs, read_logs
from assist.replay.run import Progress, Replayer, evaluate


def test_replay_demo_conversations_end_to_end(demo: Loaded) -> None:
    parsed = read_logs(DEMO_LOGS)
    seen: list[Progress] = []
    results = Replayer(demo.runtime.pipeline, demo.engine, batch_size=4, chunk=2).run(
        parsed.conversations, progress=seen.append)
    assert [r.conversation_id for r in results] == [p.conversation.conversation_id for p in parsed.conversations]
    assert [p.done for p in seen] == list(range(1, len(results) + 1)) and seen[-1].turns_done == seen[-1].turns_total
    for res, pc in zip(results, parsed.conversations, strict=True):
        assert res.error is None
        # Every turn, in log order, and only this conversation's turns.
        assert [t.turn_id for t in res.turns] == [t.turn_id for t in pc.conversation.turns]
        assert {t.conversation_id for t in res.turns} == {res.conversation_id}
        for t in res.turns:
            if t.role == "customer":
                assert t.timings_ms["total"] > 0
                assert t.intent and t.sentiment and t.sentiment_score is not None
                assert {"embed", "intent", "sentiment", "retrieve", "policy"} <= set(t.timings_ms)
                assert all(a.type != "qa_alert" for a in t.actions)
            else:
                assert "qa" in t.timings_ms and all(a.type == "qa_alert" for a in t.actions)
    by_id = {r.conversation_id: r for r in results}
    # The rash question retrieves its KB entry; the threat escalates; the superlative is flagged.
    assert "mb-diaper-rash-red-bottom" in by_id["d1"].turns[0].kb_ids
    assert "escalate" in by_id["d2"].turns[2].action_types
    assert "superlative" in by_id["d3"].turns[1].qa_flags


def test_batching_does_not_change_predictions(demo: Loaded) -> None:
    parsed = read_logs(DEMO_LOGS)
    together = Replayer(demo.runtime.pipeline, demo.engine, batch_size=64).run(parsed.conversations)
    alone = [Replayer(demo.runtime.pipeline, demo.engine, batch_size=1, chunk=1).run([pc])[0]
             for pc in parsed.conversations]

    def key(rs: list[Any]) -> list[tuple[Any, ...]]:
        return [(t.turn_id, t.intent, t.sentiment, t.kb_ids[:3], tuple(t.action_types), tuple(t.qa_flags))
                for r in rs for t in r.turns]

    assert key(together) == key(alone)


def test_a_failing_conversation_does_not_stop_the_replay(demo: Loaded) -> None:
    class Flaky:
        """The real engine, except that it fails on one text (a bug in a rule, say)."""

        def __init__(self, engine: Any) -> None:
            self._engine = engine

        def __getattr__(self, name: str) -> Any:
            return getattr(self._engine, name)

        def customer_turn(self, state: Any, **kw: Any) -> Any:
            if "12315" in kw["text"]:
                raise RuntimeError("rule exploded")
            return self._engine.customer_turn(state, **kw)

    parsed = read_logs(DEMO_LOGS)
    results = Replayer(demo.runtime.pipeline, Flaky(demo.engine)).run(parsed.conversations)
    by_id = {r.conversation_id: r for r in results}
    assert by_id["d2"].error == "RuntimeError: rule exploded"
    assert by_id["d2"].turns[-1].error and len(by_id["d2"].turns) == 3
    assert all(by_id[c].error is None for c in ("d1", "d3", "d4"))


def test_evaluate_builds_a_report_and_warns_about_unknown_gold_ids(demo: Loaded) -> None:
    text = DEMO_LOGS.read_text(encoding="utf-8").replace("mb-formula-water-temp", "no-such-entry")
    parsed = parse_logs(text, name="demo")
    report, _results = evaluate(parsed, pipeline=demo.runtime.pipeline, engine=demo.engine, shop=demo.runtime.shop)
    assert report["input"]["conversations"] == 4 and report["summary"]["input.failed_conversations"] == 0
    assert report["summary"]["intent.n"] > 0 and report["summary"]["kb.n"] == 3
    assert any("no-such-entry" in w["message"] for w in report["input"]["warnings"])
    assert report["shop"]["published_kb_entries"] > 0


def test_replay_never_touches_the_store() -> None:
    # States live in memory only: no module of the replay package may reach the database layer.
    import assist.replay

    imports = re.compile(r"^\s*(from|import)\s+assist\.(store|service)\b", re.M)
    for src in Path(assist.replay.__file__).parent.glob("*.py"):
        assert not imports.search(src.read_text(encoding="utf-8")), src.name


def test_replay_uses_logged_time_not_the_clock(demo: Loaded) -> None:
    # d2's order was paid three days before the logged turn and never shipped: recovery is due at
    # the logged time, whatever day the replay runs.
    parsed = read_logs(DEMO_LOGS)
    d2 = [pc for pc in parsed.conversations if pc.conversation.conversation_id == "d2"]
    now = Replayer(demo.runtime.pipeline, demo.engine).run(d2)[0]
    later = Replayer(demo.runtime.pipeline, demo.engine).run(d2, now=datetime(2031, 1, 1, tzinfo=UTC))[0]
    assert "recovery" in now.turns[0].action_types
    assert [t.action_types for t in later.turns] == [t.action_types for t in now.turns]
