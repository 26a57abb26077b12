"""Metrics on hand-built predictions: pure, every number worked out by hand."""

from __future__ import annotations

import pytest
from replay_build import aturn, conv, cturn, sample

from assist.replay import metrics as m


def test_classification_accuracy_macro_f1_and_confusion() -> None:
    r = m.classification(["a", "a", "b", "c"], ["a", "b", "b", "c"], ["c", "b", "a"])
    assert r["n"] == 4 and r["accuracy"] == pytest.approx(0.75)
    # a: P 1, R .5 -> F1 2/3; b: P .5, R 1 -> 2/3; c: 1.
    assert r["per_label"]["a"]["f1"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert r["confusion"]["labels"] == ["c", "b", "a"]          # display order kept
    assert r["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # rows gold, cols predicted


def test_predicted_only_label_counts_in_macro_f1_as_zero() -> None:
    r = m.classification(["a", "a"], ["a", "z"], ["a"])
    assert r["confusion"]["labels"] == ["a", "z"]
    assert r["per_label"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_empty_gold_gives_none_not_zero() -> None:
    r = m.classification([], [], ["a"])
    assert r["accuracy"] is None and r["macro_f1"] is None and r["n"] == 0
    k = m.kb_retrieval([])
    assert k["recall_at_1"] is None and k["mrr"] is None


def test_kb_recall_any_gold_id_and_mrr() -> None:
    pairs = [(["a"], ["a", "b"]), (["c", "d"], ["x", "d", "c"]), (["z"], ["q"]), ([], ["a"])]
    r = m.kb_retrieval(pairs)
    assert r["n"] == 3                                    # the turn without gold ids is not scored
    assert r["recall_at_1"] == pytest.approx(1 / 3)
    assert r["recall_at_5"] == pytest.approx(2 / 3)
    assert r["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_actions_use_distinct_types_of_top_three_positions() -> None:
    t = cturn("c", "t", actions=("answer", "answer", "clarify", "cross_sell"))
    assert m.predicted_action_set(t) == {"answer", "clarify"}   # cross_sell is 4th: not credited
    r = m.actions([(["answer", "escalate"], {"answer", "clarify"}), ([], {"care"})])
    assert r["per_type"]["answer"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "fp": 0, "fn": 0,
                                       "support": 1}
    assert r["per_type"]["escalate"]["recall"] == 0.0 and r["per_type"]["escalate"]["precision"] is None
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 2)
    assert r["exact_match"] == 0.0


def test_cross_sell_violation_counts_any_rank_and_missed_opportunities() -> None:
    turns = [
        cturn("c", "1", gold={"cross_sell_ok": False}, actions=("answer", "care", "clarify", "cross_sell")),
        cturn("c", "2", gold={"cross_sell_ok": False}, actions=("answer",)),
        cturn("c", "3", gold={"cross_sell_ok": True}, actions=("cross_sell",)),
        cturn("c", "4", gold={"cross_sell_ok": True}, actions=("answer",)),
        cturn("c", "5", actions=("cross_sell",)),                            # no gold: not judged
    ]
    r = m.cross_sell(turns)
    assert (r["violations"], r["n_not_ok"], r["missed"], r["opportunities"]) == (1, 2, 1, 2)
    assert r["violation_turns"] == ["c/1"] and r["missed_turns"] == ["c/4"]
    assert r["opportunity_recall"] == pytest.approx(0.5)


def test_qa_flags_and_turn_level() -> None:
    r = m.qa([(["rude"], ["rude", "superlative"]), (["superlative"], []), ([], ["superlative"]),
              (["personal_data"], []), ([], [])])
    assert r["n"] == 5 and r["labelled_flags"] == ["superlative", "rude", "personal_data"]
    assert r["per_flag"]["rude"]["precision"] == 1.0
    # superlative: raised on a turn labelled only rude and on a clean one, missed where labelled.
    assert (r["per_flag"]["superlative"]["fp"], r["per_flag"]["superlative"]["fn"]) == (2, 1)
    assert r["per_flag"]["superlative"]["precision"] == 0.0
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 3)
    assert r["turn_level"]["precision"] == pytest.approx(1 / 2)   # turns 1 and 3 flagged, only 1 rightly
    assert r["turn_level"]["recall"] == pytest.approx(1 / 3)


def test_qa_flags_nobody_labelled_are_counted_apart() -> None:
    # Logs labelled for wording only: the timing check was never looked for, so it is not scored.
    r = m.qa([(["rude"], ["rude", "slow_first_response"]), ([], ["slow_first_response"])])
    assert r["precision"] == 1.0 and r["turn_level"]["precision"] == 1.0
    assert r["unlabelled_raised"] == {"slow_first_response": 2}
    assert r["per_flag"]["slow_first_response"]["labelled"] is False
    assert r["per_flag"]["slow_first_response"]["precision"] is None


def test_percentile_and_histogram() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert m.percentile(xs, 50) == pytest.approx(50.5)
    assert m.percentile(xs, 99) == pytest.approx(99.01)
    assert m.percentile([], 50) is None
    h = m.histogram([*xs, 10_000.0], bins=10)
    assert h["overflow"] == 1 and sum(h["counts"]) == 100   # the p99 cut keeps the outlier apart
    assert len(h["edges"]) == 11


def test_compute_on_sample() -> None:
    r = m.compute(sample())
    assert r["intent"]["n"] == 4 and r["intent"]["accuracy"] == pytest.approx(3 / 4)
    assert r["sentiment"]["n"] == 3 and r["sentiment"]["accuracy"] == pytest.approx(2 / 3)
    assert r["kb"]["n"] == 3
    assert r["kb"]["recall_at_1"] == pytest.approx(1 / 3) and r["kb"]["recall_at_5"] == pytest.approx(2 / 3)
    assert r["actions"]["n"] == 2
    # c1/t1 top-3 = recovery, answer, cross_sell -> cross_sell is an extra, answer+recovery hit.
    assert r["actions"]["per_type"]["cross_sell"]["fp"] == 1
    assert r["cross_sell"]["violations"] == 1 and r["cross_sell"]["missed"] == 1
    assert r["qa"]["n"] == 3 and r["qa"]["per_flag"]["promise_tracked"]["recall"] == 1.0
    assert r["latency"]["total"]["n"] == 4 and r["latency"]["qa"]["n"] == 3


def test_summary_has_every_key_even_without_gold() -> None:
    plain = [conv("c", cturn("c", "t1"), aturn("c", "t2"))]
    s = m.summarise(m.compute(plain), conversations=1, turns=2, skipped_lines=0, failed_conversations=0,
                    failed_turns=0)
    assert list(s) == m.summary_keys()
    assert s["intent.accuracy"] is None and s["qa.precision"] is None
    assert s["cross_sell.violations"] == 0 and s["latency.total.p50"] is not None


def test_errors_list_every_mistake_in_log_order() -> None:
    rows = m.errors(sample())
    kinds = [(r["conversation_id"], r["turn_id"], r["kind"]) for r in rows]
    assert ("c1", "t1", "action_extra") in kinds
    assert ("c1", "t1", "cross_sell_violation") in kinds
    assert ("c1", "t3", "sentiment") in kinds and ("c1", "t3", "cross_sell_missed") in kinds
    assert ("c2", "t1", "intent") in kinds and ("c2", "t1", "kb") in kinds
    assert ("c2", "t3", "qa_missed") in kinds
    assert ("c2", "t2", "qa_false_alarm") not in kinds      # superlative is labelled nowhere in sample()
    assert ("c2", "t4", "kb") in kinds
    kb_row = next(r for r in rows if r["kind"] == "kb" and r["turn_id"] == "t1")
    assert kb_row["predicted"]["gold_rank"] == 2
    assert [r["conversation_id"] for r in rows] == sorted(r["conversation_id"] for r in rows)


def test_failed_turns_are_errors_and_not_scored() -> None:
    from dataclasses import replace

    bad = replace(cturn("c", "t1", gold={"intent": "refund"}), error="RuntimeError: boom")
    convs = [conv("c", bad, error="RuntimeError: boom")]
    assert m.compute(convs)["intent"]["n"] == 0
    rows = m.errors(convs)
    assert [(r["kind"], r["predicted"]) for r in rows] == [("failed", "RuntimeError: boom")]


def test_directions() -> None:
    assert m.lower_is_better("latency.total.p95") and m.lower_is_better("cross_sell.violations")
    assert not m.lower_is_better("intent.accuracy")
    assert m.is_neutral("intent.n") and m.is_neutral("input.turns") and not m.is_neutral("kb.mrr")
