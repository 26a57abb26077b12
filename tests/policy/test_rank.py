"""Ranking is deterministic, ids are stable, escalation/recovery sit above answers and cross-sell last."""

from __future__ import annotations

import itertools

from policy_build import Chat, analysis, at, customer, order

from assist.policy.actions import ActionType, Proposal
from assist.policy.config import RankCfg, load_policy_config
from assist.policy.rank import rank
from assist.types import Intent

CFG = load_policy_config().rank


def _p(t: ActionType, score: float, rule: str = "r", sku: str | None = None) -> Proposal:
    # a qa_alert always names its flag (the policy→state contract, assist.policy.actions.QaDetails)
    details = {"code": "superlative"} if t is ActionType.qa_alert else {}
    return Proposal(type=t, rule=rule, score=score, sku=sku, details=details)


def test_type_priority_orders_actions_and_ids_count_per_type() -> None:
    props = [_p(ActionType.cross_sell, 0.99), _p(ActionType.answer, 0.9), _p(ActionType.care, 0.5),
             _p(ActionType.escalate, 0.1), _p(ActionType.recovery, 0.8), _p(ActionType.answer, 0.4, "r2")]
    ranked = rank(props, "t7", CFG)
    assert [a.type for a in ranked] == ["escalate", "recovery", "answer", "answer", "care"]  # capped at 5
    assert [a.id for a in ranked] == ["t7:escalate:1", "t7:recovery:1", "t7:answer:1", "t7:answer:2", "t7:care:1"]
    assert ranked[2].score == 0.9


def test_any_input_order_gives_the_same_ranking() -> None:
    props = [_p(ActionType.answer, 0.5, "a", "X"), _p(ActionType.answer, 0.5, "a", "Y"),
             _p(ActionType.clarify, 0.7), _p(ActionType.care, 0.5, "c1"), _p(ActionType.care, 0.5, "c0")]
    expected = [a.model_dump() for a in rank(props, "t1", CFG)]
    for perm in itertools.permutations(props):
        assert [a.model_dump() for a in rank(list(perm), "t1", CFG)] == expected


def test_qa_alerts_are_never_cut_by_the_cap() -> None:
    props = [_p(ActionType.qa_alert, 0.5, f"qa{i}") for i in range(7)] + [_p(ActionType.answer, 0.5)]
    ranked = rank(props, "a1", RankCfg(priority=CFG.priority, max_actions=1))
    assert sum(a.type is ActionType.qa_alert for a in ranked) == 7 and len(ranked) == 8


def test_priorities_are_configured() -> None:
    props = [_p(ActionType.answer, 0.5), _p(ActionType.care, 0.5)]
    flipped = RankCfg(priority={**CFG.priority, "care": 80}, max_actions=5)
    assert [a.type for a in rank(props, "t", flipped)] == ["care", "answer"]


def test_every_action_carries_script_reason_and_evidence() -> None:
    chat = Chat(profile=customer(order("o1", "EP-1", status="paid", paid=at(hours=-40), batch="B1", region="北京")))
    actions = chat.customer(analysis("第三次问了 耳机还没发货 再不发我就投诉", Intent.logistics, 0.8,
                                     sentiment="negative", emotion="anger", intensity=0.9, skus=["EP-1"]))
    assert [a.type for a in actions][:2] == ["escalate", "recovery"]
    for a in actions:
        assert a.script and a.reason and a.evidence, a
        assert a.id.startswith("t1:")
