"""The evaluation protocol (assist.replay.protocol): groups by writer and shop, and its scores."""

from __future__ import annotations

from pathlib import Path

from assist.replay.parse import Gold
from assist.replay.protocol import group_of, score
from assist.replay.results import ActionView, ConversationResult, TurnResult
from assist.training.dialogue import DialogueFile, Split

SPLIT = Split(frozenset({"w1", "w2"}), frozenset({"demo", "home"}), frozenset({"w9"}), frozenset({"sports"}))


def _f(writer: str, shop: str) -> DialogueFile:
    return DialogueFile(writer, shop, Path(f"{writer}/{shop}.jsonl"))


def test_a_conversation_is_tuned_only_if_both_its_writer_and_shop_are() -> None:
    assert group_of(SPLIT, _f("w1", "demo")) == "tuned"
    assert group_of(SPLIT, _f("w9", "demo")) == "writers_out"
    assert group_of(SPLIT, _f("w1", "sports")) == "shop_out"
    assert group_of(SPLIT, _f("w9", "sports")) == "both_out"
    # a writer or shop named nowhere is never tuned on
    assert group_of(SPLIT, _f("w5", "demo")) == "writers_out"
    assert group_of(SPLIT, _f("w1", "office")) == "shop_out"


def _turn(tid: str, gold_actions: list[str], predicted: list[str], *, signals: list[str] | None = None,
          ok: bool | None = None) -> TurnResult:
    return TurnResult(conversation_id="c1", turn_id=tid, role="customer", text="x",
                      gold=Gold(actions=gold_actions, signals=signals or [], cross_sell_ok=ok),
                      intent="other", sentiment="neutral", actions=tuple(ActionView(type=t) for t in predicted))


def test_score_counts_key_actions_violations_and_false_alarms() -> None:
    turns = (
        _turn("t1", ["answer"], ["answer"], ok=False),
        _turn("t2", ["escalate", "quality_report"], ["escalate", "answer"], ok=False),
        _turn("t3", ["cross_sell"], ["escalate"], signals=["solved"], ok=True),  # a false alarm, a missed moment
        _turn("t4", [], ["cross_sell"], ok=False),  # a violation
    )
    s = score([ConversationResult("c1", 1, turns)])
    # key actions only: answer is not one. tp: escalate(t2); fp: escalate(t3), cross_sell(t4); fn: qr(t2), cs(t3)
    assert s["key_actions"]["precision"] == 1 / 3 and s["key_actions"]["recall"] == 1 / 3
    assert s["false_alarms"] == 1 and s["false_alarm_turns"] == ["c1/t3"]
    assert s["cross_sell"]["violations"] == 1 and s["cross_sell"]["missed"] == 1
