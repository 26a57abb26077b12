"""Service recovery within configured allowances: unshipped orders, logistics delays, defects."""

from __future__ import annotations

from policy_build import Chat, analysis, at, customer, make_engine, of_type, order, types

from assist.types import Intent


def _where_is_my_order() -> object:
    return analysis("我的订单怎么还没发货", Intent.logistics, 0.9, sentiment="negative")


def test_paid_over_24h_and_not_shipped_gets_apology_priority_shipping_and_coupon() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-30))))
    actions = chat.customer(_where_is_my_order())
    rec = of_type(actions, "recovery")
    assert len(rec) == 1
    r = rec[0]
    assert r.details["case"] == "unshipped" and r.details["order_id"] == "o9"
    assert r.details["priority_shipping"] is True and r.details["coupon_yuan"] == 5  # normal tier
    assert "订单o9付款" in r.script and "优先发货" in r.script and "5元无门槛优惠券" in r.script
    assert r.reason.startswith("订单o9付款30小时未发货（超过24小时）")
    assert types(actions).index("recovery") < types(actions).index("answer")  # recovery above the answer


def test_paid_recently_is_not_late() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-5))))
    assert "recovery" not in types(chat.customer(_where_is_my_order()))


def test_allowance_depends_on_the_customer_tier() -> None:
    vip = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-30)), tier="vip"))
    r = of_type(vip.customer(_where_is_my_order()), "recovery")[0]
    assert r.details["tier"] == "vip" and r.details["coupon_yuan"] == 15 and r.details["gift"] == "随单小礼品一份"
    assert "随单小礼品一份" in r.script


def test_unknown_tier_falls_back_to_the_default_tier() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-30)), tier="diamond"))
    r = of_type(chat.customer(_where_is_my_order()), "recovery")[0]
    assert r.details["tier"] == "normal" and r.details["coupon_yuan"] == 5


def test_threshold_and_allowance_come_from_the_shop_policy() -> None:
    overrides = {"recovery": {"unshipped_after_hours": 48,
                              "allowances": {"normal": {"unshipped": {"coupon_yuan": 12, "gift": "小熊贴纸"}}}}}
    late_30h = customer(order("o9", "DP-M", status="paid", paid=at(hours=-30)))
    assert "recovery" not in types(Chat(engine=make_engine(overrides), profile=late_30h).customer(_where_is_my_order()))
    late_50h = customer(order("o9", "DP-M", status="paid", paid=at(hours=-50)))
    r = of_type(Chat(engine=make_engine(overrides), profile=late_50h).customer(_where_is_my_order()), "recovery")[0]
    assert r.details["coupon_yuan"] == 12 and r.details["gift"] == "小熊贴纸"


def test_recovery_is_offered_once_per_order() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-30))))
    chat.customer(_where_is_my_order())
    assert "recovery" not in types(chat.customer(_where_is_my_order()))


def test_late_order_is_not_brought_up_on_an_unrelated_presale_question() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="paid", paid=at(hours=-30))))
    actions = chat.customer(analysis("纸尿裤尺码怎么选", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    assert "recovery" not in types(actions)


def test_shipped_long_ago_and_not_delivered_is_a_logistics_delay() -> None:
    chat = Chat(profile=customer(order("o8", "WH-1", status="shipped", paid=at(days=-6), shipped=at(days=-5))))
    r = of_type(chat.customer(analysis("物流怎么一直不动", Intent.logistics, 0.9, sentiment="negative")), "recovery")[0]
    assert r.details["case"] == "delay" and "延误" in r.script


def test_logistics_question_without_kb_answer_is_answered_from_order_facts() -> None:
    chat = Chat(profile=customer(order("o8", "WH-1", status="shipped", paid=at(days=-2), shipped=at(days=-1))))
    answer = of_type(chat.customer(analysis("到哪了", Intent.logistics, 0.9)), "answer")[0]
    assert answer.rule == "answer.order_status"
    assert "订单o8" in answer.script and "已于" in answer.script
    assert "recovery" not in [a.type for a in chat.log[-1][1]]


def test_confirmed_defect_gets_exchange_and_compensation_within_allowance() -> None:
    chat = Chat(profile=customer(order("o1", "WH-1", paid=at(days=-20)), tier="gold"))
    chat.customer(analysis("热水器水不热", Intent.usage_howto, 0.9, hits=[("wh-not-hot", 0.85)]))
    chat.agent("亲，温度调到50℃试试")
    actions = chat.customer(analysis("照着调了还是不热", Intent.product_defect, 0.8, sentiment="negative",
                                     hits=[("wh-defect", 0.8)]))
    r = of_type(actions, "recovery")[0]
    assert r.details["case"] == "defect" and r.details["remedy"] == "优先换新" and r.details["coupon_yuan"] == 20
    # The defect-handling KB entry (not the failed guidance) is proposed as the answer.
    assert [a.kb_id for a in of_type(actions, "answer")] == ["wh-defect"]
