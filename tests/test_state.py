"""Conversation state: JSON round-trip, stage transitions, problems, feedback, events (pure)."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from assist.errors import SuggestionNotFound
from assist.state import (
    ConversationState,
    CustomerProfile,
    OrderEvent,
    Stage,
    TurnSignals,
    new_state,
    on_actions,
    on_agent_turn,
    on_customer_turn,
    on_feedback,
    on_order_event,
    on_profile,
    on_resolve,
)
from assist.types import Intent

sys.path.insert(0, str(Path(__file__).parent / "policy"))
from policy_build import T0, Chat, analysis, at, customer, fold_turn, make_policy, order


def _busy_state() -> ConversationState:
    """A state with every part filled: problem, suggestions, escalation, promise, orders, qa counts."""
    chat = Chat(profile=customer(order("o1", "EP-1", paid=at(days=-10), batch="B1", region="浙江"), tier="vip"))
    chat.customer(analysis("耳机声音太小", Intent.product_defect, 0.6, top=[("usage_howto", 0.4)],
                           sentiment="negative", hits=[("ep-volume-low", 0.8)], skus=["EP-1"]))
    chat.agent("亲，明天一定给您答复，先调大音量试试")
    chat.customer(analysis("试过了还是不行 我要投诉", Intent.complaint, 0.8, sentiment="negative",
                           emotion="anger", intensity=0.9))
    return chat.state


def test_new_state_starts_in_opening() -> None:
    s = new_state("c1")
    assert s.stage is Stage.opening and s.problem is None and s.customer is None and s.suggestions == {}


def test_json_round_trip_of_a_busy_state() -> None:
    state = _busy_state()
    assert state.problem is not None and state.open_escalations and state.open_promises and state.suggestions
    dumped = state.model_dump(mode="json")
    text = json.dumps(dumped, ensure_ascii=False)
    back = ConversationState.model_validate(json.loads(text))
    assert back == state
    assert back.model_dump(mode="json") == dumped


def test_state_is_frozen() -> None:
    with pytest.raises(ValidationError):
        new_state("c1").stage = Stage.closing  # type: ignore[misc]


def test_stages_follow_customer_and_agent_turns() -> None:
    chat = Chat()
    chat.customer(analysis("你好", Intent.greeting_thanks, 0.9))
    assert chat.state.stage is Stage.opening
    chat.customer(analysis("耳机声音太小怎么调", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.8)]))
    assert chat.state.stage is Stage.identifying
    chat.agent("亲，先把音量调到最大试试")
    assert chat.state.stage is Stage.solving
    chat.customer(analysis("可以了 谢谢", Intent.greeting_thanks, 0.9, sentiment="positive"))
    assert chat.state.stage is Stage.resolved and chat.state.resolved
    assert chat.state.problem is not None and chat.state.problem.resolved_by == "customer"
    chat.customer(analysis("拜拜", Intent.greeting_thanks, 0.9))
    assert chat.state.stage is Stage.closing
    chat.customer(analysis("对了 发票怎么开", Intent.invoice, 0.9))
    assert chat.state.stage is Stage.identifying and not chat.state.resolved
    assert chat.state.problems_seen == 2


def test_thanks_before_any_answer_does_not_resolve() -> None:
    chat = Chat()
    chat.customer(analysis("热水器不热", Intent.usage_howto, 0.9))  # nothing found, nothing answered
    chat.customer(analysis("谢谢", Intent.greeting_thanks, 0.9))
    assert chat.state.stage is Stage.identifying


def test_holding_reply_is_not_an_answer_and_thanks_for_trying_is_not_a_confirmation() -> None:
    chat = Chat()
    chat.customer(analysis("热水器不热", Intent.usage_howto, 0.9))
    chat.agent("稍等，我帮您查一下")
    assert chat.state.stage is Stage.identifying
    assert chat.state.problem is not None and chat.state.problem.guidance_given == 0
    chat.agent("亲，把温度调到50℃试试")
    assert chat.state.stage is Stage.solving
    chat.customer(analysis("好的谢谢 我先试试", Intent.greeting_thanks, 0.9, sentiment="positive"))
    assert chat.state.stage is Stage.solving and not chat.state.resolved


def test_agent_goodbye_closes() -> None:
    chat = Chat()
    chat.customer(analysis("你好", Intent.greeting_thanks, 0.9))
    chat.agent("感谢您的咨询，再见～")
    assert chat.state.stage is Stage.closing


def test_retry_reopens_a_problem_that_looked_solved() -> None:
    chat = Chat()
    chat.customer(analysis("耳机声音太小", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.8)]))
    chat.agent("调大音量试试")
    chat.customer(analysis("好了 谢谢", Intent.greeting_thanks, 0.9, sentiment="positive"))
    assert chat.state.stage is Stage.resolved
    chat.customer(analysis("诶 又不行了 还是没声音", Intent.product_defect, 0.8, sentiment="negative"))
    p = chat.state.problem
    assert p is not None and p.id == "t1" and not p.resolved and p.retries == 1
    assert chat.state.stage is Stage.solving and not chat.state.resolved


def test_other_family_or_other_product_opens_a_new_problem_and_complaint_joins() -> None:
    policy = make_policy()
    s = fold_turn(new_state("c1"), analysis("耳机声音小", Intent.usage_howto, 0.9, skus=["EP-1"]), "t1", T0, policy)
    s = fold_turn(s, analysis("再不解决我投诉了", Intent.complaint, 0.9), "t2", T0, policy)
    assert s.problem is not None and s.problem.id == "t1" and s.problem.complaint
    assert s.problem.intent is Intent.usage_howto and s.problem.customer_turns == 2
    s = fold_turn(s, analysis("热水器也不热", Intent.usage_howto, 0.9, skus=["WH-1"]), "t3", T0, policy)
    assert s.problem is not None and s.problem.id == "t3" and s.problem.sku == "WH-1"
    s = fold_turn(s, analysis("快递到哪了", Intent.logistics, 0.9), "t4", T0, policy)
    assert s.problem is not None and s.problem.family == "order"
    assert s.products_in_context == ["EP-1", "WH-1"]


def test_without_signals_the_analysis_alone_drives_transitions() -> None:
    s = on_customer_turn(new_state("c1"), turn_id="t1", text="耳机声音小", ts=T0,
                         analysis=analysis("耳机声音小", Intent.usage_howto, 0.9))
    assert s.problem is not None and s.problem.family == "usage_howto" and s.stage is Stage.identifying
    s = on_agent_turn(s, turn_id="t2", text="调大音量", ts=T0 + timedelta(seconds=5))
    s = on_customer_turn(s, turn_id="t3", text="谢谢", ts=T0 + timedelta(minutes=1),
                         analysis=analysis("谢谢", Intent.greeting_thanks, 0.9, sentiment="positive"))
    assert s.stage is Stage.resolved


def test_sentiment_trend_and_texts_are_bounded() -> None:
    s = new_state("c1")
    for i in range(40):
        s = on_customer_turn(s, turn_id=f"t{i}", text="在吗", ts=T0, analysis=analysis("在吗", score=i / 100),
                             signals=TurnSignals())
    assert len(s.sentiment_trend) == 10 and s.sentiment_trend[-1] == 0.39
    assert len(s.customer_texts) == 30 and s.customer_turns == 40


def test_on_actions_records_suggestions_escalations_and_guidance() -> None:
    state = _busy_state()
    kinds = {s.type for s in state.suggestions.values()}
    assert {"answer", "clarify", "escalate", "qa_alert"} <= kinds
    assert state.escalation_open and state.open_escalations[0].problem_id == "t1"
    assert state.problem is not None and state.problem.kb_ids == ["ep-volume-low"] and state.problem.escalated
    assert on_actions(state, [], T0) is state


def test_feedback_updates_and_unknown_suggestion_raises() -> None:
    state = _busy_state()
    esc_id = state.open_escalations[0].id
    s = on_feedback(state, suggestion_id=esc_id, outcome="dismissed", ts=T0)
    assert s.suggestions[esc_id].status == "dismissed" and not s.escalation_open
    answer_id = next(k for k, v in state.suggestions.items() if v.type == "answer")
    s = on_feedback(s, suggestion_id=answer_id, outcome="edited", ts=T0, edited_text="改过的话术")
    assert s.suggestions[answer_id].edited_text == "改过的话术"
    with pytest.raises(SuggestionNotFound) as exc:
        on_feedback(state, suggestion_id="nope", outcome="accepted", ts=T0)
    assert exc.value.code == "suggestion.not_found"
    with pytest.raises(ValueError):
        on_feedback(state, suggestion_id=answer_id, outcome="liked", ts=T0)


def test_resolve_closes_problem_escalations_and_handle_promises() -> None:
    state = _busy_state()
    s = on_resolve(state, ts=T0 + timedelta(hours=1))
    assert s.stage is Stage.resolved and s.resolved and s.resolved_at is not None
    assert s.problem is not None and s.problem.resolved_by == "agent"
    assert not s.escalation_open
    assert [p.status for p in s.open_promises] == ["kept"]  # "答复" is a contact promise, kept by resolve


def test_order_events_update_orders_and_keep_promises() -> None:
    state = on_profile(new_state("c1"), customer(order("o1", "DP-M", status="paid", paid=at(hours=-3))))
    s = on_order_event(state, OrderEvent(order_id="o1", type="shipped", ts=at(0)))
    assert s.customer is not None and s.customer.orders[0].status == "shipped" and s.customer.orders[0].shipped_at
    s = on_order_event(s, OrderEvent(order_id="o1", type="delayed", ts=at(60)))
    assert s.customer is not None and s.customer.orders[0].delayed_at is not None
    s = on_order_event(s, OrderEvent(order_id="o2", type="paid", ts=at(70), sku="RC-1"))
    assert s.customer is not None and [o.order_id for o in s.customer.orders] == ["o1", "o2"]


def test_order_event_without_a_profile_creates_an_anonymous_one() -> None:
    s = on_order_event(new_state("c9"), OrderEvent(order_id="o1", type="paid", ts=T0, sku="EP-1"))
    assert s.customer is not None and s.customer.id == "anon:c9"
    assert s.customer.orders[0].sku == "EP-1" and s.customer.orders[0].paid_at == T0


def test_profile_payloads_with_unknown_fields_are_accepted() -> None:
    p = CustomerProfile.model_validate({"id": "u1", "tier": "vip", "nickname": "小王",
                                        "orders": [{"order_id": "o1", "sku": "EP-1", "status": "delivered",
                                                    "paid_at": "2026-11-20T10:00:00+08:00", "channel": "app"}]})
    assert p.orders[0].paid_at is not None and p.orders[0].paid_at.utcoffset() == timedelta(hours=8)
