"""Proactive care: anxious customers, seasonal reminders, first-use tips, order-event notices."""

from __future__ import annotations

from datetime import datetime

from policy_build import CST, Chat, analysis, at, customer, make_engine, of_type, order, types

from assist.state import OrderEvent
from assist.types import Intent


def test_anxious_customer_gets_a_reassuring_line_below_the_answer() -> None:
    chat = Chat()
    actions = chat.customer(analysis("急死了 宝宝屁股红红的怎么办", Intent.usage_howto, 0.9, sentiment="negative",
                                     emotion="anxiety", intensity=0.7, hits=[("dp-rash", 0.8)]))
    care = of_type(actions, "care")
    assert care and care[0].rule == "care.anxiety" and care[0].script.startswith("亲别着急")
    assert types(actions).index("answer") < types(actions).index("care")
    # Once per problem.
    again = chat.customer(analysis("快点啊", Intent.usage_howto, 0.6, sentiment="negative", emotion="anxiety",
                                   intensity=0.8))
    assert not [a for a in of_type(again, "care") if a.rule == "care.anxiety"]


def test_calm_customer_gets_no_anxiety_care() -> None:
    chat = Chat()
    actions = chat.customer(analysis("宝宝屁股红红的怎么办", Intent.usage_howto, 0.9, hits=[("dp-rash", 0.8)]))
    assert "care" not in types(actions)


def _heater_chat(**kw: object) -> tuple[Chat, list[object]]:
    chat = Chat(profile=customer(order("o1", "WH-1", paid=at(days=-40))), **kw)  # type: ignore[arg-type]
    first = chat.customer(analysis("热水器水不够热", Intent.usage_howto, 0.9, hits=[("wh-not-hot", 0.85)]))
    chat.agent("亲，温度调到50℃试试")
    return chat, first + chat.customer(analysis("好了 谢谢", Intent.greeting_thanks, 0.9, sentiment="positive"))


def test_winter_heater_reminder_once_the_heater_problem_is_solved() -> None:
    _, actions = _heater_chat()
    care = [a for a in of_type(actions, "care") if a.rule == "care.seasonal.winter_antifreeze"]
    assert len(care) == 1 and "防冻" in care[0].reason + care[0].script and "month=11" in care[0].evidence
    assert care[0].id.startswith("t3:")  # not while the problem was open (t1)


def test_no_heater_reminder_in_summer_or_for_other_products() -> None:
    _, actions = _heater_chat(start=datetime(2026, 7, 1, 10, tzinfo=CST))
    assert not [a for a in of_type(actions, "care") if "seasonal" in a.rule]
    other = Chat()
    actions = other.customer(analysis("耳机声音小", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.85)]))
    assert "care" not in types(actions)


def test_seasonal_months_are_configured() -> None:
    engine = make_engine({"care": {"seasonal": [{"id": "summer_descale", "months": [7], "categories": ["家电/热水器"],
                                                 "script": "夏天记得清洗水垢哦"}]}})
    _, actions = _heater_chat(engine=engine, start=datetime(2026, 7, 1, 10, tzinfo=CST))
    assert [a.script for a in of_type(actions, "care")] == ["夏天记得清洗水垢哦"]


def test_delivered_event_for_a_first_time_buyer_brings_usage_tips() -> None:
    engine = make_engine()
    state = engine.new_conversation("c1", customer(order("o1", "WH-1", status="shipped", paid=at(days=-3),
                                                         shipped=at(days=-2))))
    step = engine.order_event(state, OrderEvent(order_id="o1", type="delivered", ts=at(0)))
    care = of_type(step.actions, "care")
    assert care and care[0].rule == "care.first_use.event"
    assert "首次使用前请确认燃气阀" in care[0].script  # the configured tip for 家电/热水器
    assert step.state.customer is not None and step.state.customer.orders[0].status == "delivered"


def test_repeat_buyer_gets_no_first_use_tips() -> None:
    engine = make_engine()
    state = engine.new_conversation("c1", customer(order("o0", "EP-1", paid=at(days=-300)),
                                                   order("o1", "EP-1", status="shipped", paid=at(days=-3))))
    step = engine.order_event(state, OrderEvent(order_id="o1", type="delivered", ts=at(0)))
    assert "care" not in types(step.actions)


def test_first_use_tip_falls_back_to_the_usage_kb_entry() -> None:
    engine = make_engine()
    state = engine.new_conversation("c1", customer(order("o1", "EP-1", status="shipped", paid=at(days=-3))))
    care = of_type(engine.order_event(state, OrderEvent(order_id="o1", type="delivered", ts=at(0))).actions, "care")
    assert "蓝牙耳机声音太小怎么办" in care[0].script


def test_delayed_event_brings_recovery_and_a_proactive_notice_once() -> None:
    engine = make_engine()
    state = engine.new_conversation("c1", customer(order("o1", "DP-M", status="shipped", paid=at(days=-3),
                                                         shipped=at(days=-2)), tier="vip"))
    step = engine.order_event(state, OrderEvent(order_id="o1", type="delayed", ts=at(0), detail="中转延误"))
    assert types(step.actions) == ["recovery", "care"]
    rec, care = step.actions
    assert rec.details["case"] == "delay" and rec.details["coupon_yuan"] == 15
    assert rec.id.startswith("ev:o1:delayed:20261123200000:")
    assert "物流有些延迟" in care.script
    again = engine.order_event(step.state, OrderEvent(order_id="o1", type="delayed", ts=at(60)))
    assert again.actions == []


def test_no_extra_reassurance_next_to_a_recovery() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-60))))
    actions = chat.customer(analysis("三天了还不发货 家里最后一包了", Intent.logistics, 0.9, sentiment="negative",
                                     emotion="anxiety", intensity=0.95))
    assert "recovery" in types(actions) and "care" not in types(actions)
