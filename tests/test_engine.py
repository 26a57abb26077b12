"""The pure step engine: determinism, stable ids, time handling, and a whole conversation."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from assist.engine import Engine, StepResult
from assist.state import ConversationState, OrderEvent, Stage
from assist.types import Intent

sys.path.insert(0, str(Path(__file__).parent / "policy"))
from policy_build import (
    CST,
    T0,
    analysis,
    at,
    customer,
    make_engine,
    make_shop,
    of_type,
    order,
    types,
)

# (role, text, analysis kwargs) — a diaper question, answered, confirmed; then a complaint about a late order.
SCRIPT: list[tuple[str, str, dict[str, object]]] = [
    ("customer", "在吗", {"intent": Intent.greeting_thanks}),
    ("agent", "您好，在的亲～", {}),
    ("customer", "宝宝最近红屁屁，12斤穿什么码", {"intent": Intent.presale_product, "hits": [("dp-size", 0.8)]}),
    ("agent", "亲，12斤建议M码，我们家纸尿裤是全网最好的", {}),
    ("customer", "好的谢谢 解决了", {"intent": Intent.greeting_thanks, "sentiment": "positive"}),
    ("agent", "不客气，明天一定给您发货", {}),
    ("customer", "上次那单付款两天了还没发货！", {"intent": Intent.logistics, "sentiment": "negative",
                                              "emotion": "anger", "intensity": 0.6}),
]


def _run(engine: Engine) -> tuple[ConversationState, list[StepResult]]:
    state = engine.new_conversation("c1", customer(order("o1", "DP-M", paid=at(days=-3)),
                                                   order("o2", "WP-1", status="paid", paid=at(hours=-50))))
    steps = []
    for i, (role, text, kw) in enumerate(SCRIPT, start=1):
        ts = T0 + timedelta(seconds=20 * i)
        if role == "customer":
            step = engine.customer_turn(state, turn_id=f"t{i}", text=text, ts=ts,
                                        analysis=analysis(text, conf=0.9, **kw))  # type: ignore[arg-type]
        else:
            step = engine.agent_turn(state, turn_id=f"t{i}", text=text, ts=ts)
        steps.append(step)
        state = step.state
    return state, steps


def test_a_whole_conversation() -> None:
    state, steps = _run(make_engine())
    by_turn = {f"t{i}": types(s.actions) for i, s in enumerate(steps, start=1)}
    assert by_turn["t1"] == ["clarify"]  # "在吗" -> "在的～请问有什么可以帮您？"
    assert by_turn["t2"] == ["qa_alert"]  # 20 s > 15 s first response
    assert by_turn["t3"] == ["answer"]
    assert sorted(a.details["code"] for a in steps[3].actions) == ["superlative"]
    assert by_turn["t5"] == ["cross_sell"]
    cs = steps[4].actions[0]
    assert cs.sku == "RC-1" and "顾客提到「红屁屁」" in cs.reason and cs.reason.startswith("3天前买了贝舒纸尿裤 M码")
    assert [a.details["code"] for a in steps[5].actions] == ["promise_tracked"]
    assert by_turn["t7"][0] == "recovery" and steps[6].actions[0].details["order_id"] == "o2"
    assert state.stage is Stage.identifying and state.customer_turns == 4 and state.agent_turns == 3
    assert [p.kind for p in state.open_promises] == ["ship"]


def test_same_inputs_same_outputs() -> None:
    s1, steps1 = _run(make_engine())
    s2, steps2 = _run(make_engine())
    assert s1 == s2
    assert [[a.model_dump() for a in s.actions] for s in steps1] == [[a.model_dump() for a in s.actions] for s in steps2]
    assert s1.model_dump_json() == s2.model_dump_json()


def test_action_ids_are_unique_within_a_conversation() -> None:
    state, steps = _run(make_engine())
    ids = [a.id for s in steps for a in s.actions]
    assert len(ids) == len(set(ids)) and set(ids) <= set(state.suggestions)


def test_state_round_trips_mid_conversation_without_changing_decisions() -> None:
    engine = make_engine()
    state, _ = _run(engine)
    restored = ConversationState.model_validate_json(state.model_dump_json())
    a = analysis("那我再问下L码", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)])
    live = engine.customer_turn(state, turn_id="t9", text=a.text, ts=at(10), analysis=a)
    again = engine.customer_turn(restored, turn_id="t9", text=a.text, ts=at(10), analysis=a)
    assert live.actions == again.actions and live.state == again.state


def test_naive_timestamps_are_read_in_the_shop_timezone() -> None:
    engine = make_engine()
    naive_paid = datetime(2026, 11, 22, 8, 0)  # = 08:00 +08:00, 36 h before T0
    state = engine.new_conversation("c1", customer(order("o1", "DP-M", status="paid", paid=naive_paid)))
    assert state.customer is not None
    assert state.customer.orders[0].paid_at == datetime(2026, 11, 22, 8, 0, tzinfo=CST)
    a = analysis("怎么还没发货", Intent.logistics, 0.9)
    step = engine.customer_turn(state, turn_id="t1", text=a.text, ts=datetime(2026, 11, 23, 20, 0), analysis=a)
    assert of_type(step.actions, "recovery")[0].reason.startswith("订单o1付款36小时")
    assert step.state.last_customer_ts == T0


def test_timezone_is_configured() -> None:
    engine = make_engine({"timezone": "UTC"})
    a = analysis("怎么还没发货", Intent.logistics, 0.9)
    step = engine.customer_turn(engine.new_conversation("c1"), turn_id="t1", text=a.text,
                                ts=datetime(2026, 11, 23, 12, 0), analysis=a)
    assert step.state.last_customer_ts == datetime(2026, 11, 23, 20, 0, tzinfo=CST)


def test_the_engine_never_reads_the_clock() -> None:
    engine = make_engine()
    a = analysis("在吗", Intent.greeting_thanks)
    with pytest.raises(ValueError, match="does not read the clock"):
        engine.customer_turn(engine.new_conversation("c1"), turn_id="t1", text="在吗", ts=None, analysis=a)
    step = engine.customer_turn(engine.new_conversation("c1"), turn_id="t1", text="在吗", ts=None, analysis=a, now=T0)
    assert step.state.last_customer_ts == T0


def test_profile_and_feedback_steps() -> None:
    engine = make_engine()
    state, steps = _run(engine)
    step = engine.profile(state, customer(tier="vip", opt_out=True))
    assert step.actions == [] and step.state.customer is not None and step.state.customer.opt_out_marketing
    cs_id = steps[4].actions[0].id
    fb = engine.feedback(state, suggestion_id=cs_id, outcome="accepted", ts=at(30))
    assert fb.actions == [] and fb.state.suggestions[cs_id].status == "accepted"


def test_order_event_step_applies_then_decides() -> None:
    engine = make_engine()
    state, _ = _run(engine)
    step = engine.order_event(state, OrderEvent(order_id="o2", type="shipped", ts=at(40)))
    assert step.state.customer is not None
    assert next(o for o in step.state.customer.orders if o.order_id == "o2").status == "shipped"
    assert [p.status for p in step.state.open_promises] == ["kept"]  # "明天一定给您发货" kept


def test_engine_from_shop_uses_the_shop_policy() -> None:
    engine = Engine.from_shop(make_shop({"qa": {"first_response_seconds": 60}}))
    assert engine.policy.config.qa.first_response_seconds == 60
