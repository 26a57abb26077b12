"""Solve first, then suggest: every condition of the cross-sell rule, each with a case where it blocks."""

from __future__ import annotations

from policy_build import (
    Chat,
    analysis,
    at,
    customer,
    make_engine,
    make_policy,
    make_shop,
    of_type,
    order,
    types,
)

from assist.engine import Engine
from assist.types import Intent


def _diaper_question() -> object:
    return analysis("宝宝12斤穿什么码", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)])


def _thanks(**kw: object) -> object:
    return analysis("好的谢谢 解决了", Intent.greeting_thanks, 0.95, sentiment="positive", **kw)  # type: ignore[arg-type]


def _solved_diaper_chat(engine: Engine | None = None, profile: object = None) -> tuple[Chat, list[object]]:
    chat = Chat(engine=engine, profile=profile or customer(order("o1", "DP-M", paid=at(days=-3))))  # type: ignore[arg-type]
    first = chat.customer(_diaper_question())
    assert "cross_sell" not in types(first), "never in the same breath as the answer"
    chat.agent("亲，12斤建议穿M码哦")
    return chat, chat.customer(_thanks())


def test_cross_sell_after_the_customer_confirms_with_reason_and_script() -> None:
    chat, actions = _solved_diaper_chat()
    cs = of_type(actions, "cross_sell")
    assert len(cs) == 1
    assert cs[0].sku == "RC-1"  # RC-2 weighs more but is out of stock
    assert cs[0].script == "护臀霜脚本"
    assert cs[0].reason == "3天前买了贝舒纸尿裤 M码；买纸尿裤的宝妈常加购护臀霜"
    assert cs[0].details["solved_by"] == "customer_confirmed"
    assert any(e.startswith("relation=category:母婴/纸尿裤->RC-1") for e in cs[0].evidence)
    assert chat.state.cross_sells_shown == ["RC-1"]


def test_no_cross_sell_while_the_problem_is_open() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    actions = chat.customer(analysis("宝宝屁股红红的怎么办", Intent.usage_howto, 0.9, hits=[("dp-rash", 0.8)]))
    assert "cross_sell" not in types(actions)
    f = make_policy().explain(chat.state, analysis("宝宝屁股红红的怎么办", Intent.usage_howto, 0.9), at(2))
    assert "problem_not_solved" in f["cross_sell"]["blocked"]


def test_presale_question_answered_earlier_opens_the_moment() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(_diaper_question())
    actions = chat.customer(analysis("嗯 我再看看", Intent.presale_product, 0.7))
    assert of_type(actions, "cross_sell")[0].details["solved_by"] == "presale_answered"


def test_negative_sentiment_blocks() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(_diaper_question())
    chat.agent("亲，12斤建议穿M码哦")
    actions = chat.customer(analysis("行吧 谢谢", Intent.greeting_thanks, 0.8, sentiment="negative", score=-0.5))
    assert "cross_sell" not in types(actions)


def test_recent_negative_trend_blocks_even_if_this_turn_is_positive() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("你们这纸尿裤尺码标得乱七八糟", Intent.presale_product, 0.8, sentiment="negative",
                           score=-0.9, hits=[("dp-size", 0.8)]))
    chat.customer(analysis("气死了 到底穿哪个码", Intent.presale_product, 0.8, sentiment="negative", score=-0.9,
                           hits=[("dp-size", 0.8)]))
    actions = chat.customer(_thanks(score=0.3))
    assert "cross_sell" not in types(actions)


def test_open_escalation_or_complaint_blocks() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(_diaper_question())
    esc = chat.customer(analysis("再这样我就去12315投诉你们", Intent.complaint, 0.9, sentiment="negative",
                                 emotion="anger", intensity=0.85))
    assert "escalate" in types(esc)
    chat.agent("非常抱歉，马上帮您处理")
    actions = chat.customer(_thanks())
    assert "cross_sell" not in types(actions)


def test_opted_out_customer_gets_no_cross_sell() -> None:
    _, actions = _solved_diaper_chat(profile=customer(order("o1", "DP-M", paid=at(days=-3)), opt_out=True))
    assert "cross_sell" not in types(actions)


def test_out_of_stock_target_is_never_offered() -> None:
    chat, _ = _solved_diaper_chat()
    explained = make_policy().explain(chat.state, _thanks(), at(10))  # type: ignore[arg-type]
    assert explained["cross_sell"]["rejected"]["RC-2"] == "out_of_stock"


def test_same_durable_item_bought_recently_is_not_offered_but_consumables_are() -> None:
    # Phone bought 3 days ago -> power bank; the power bank itself bought 5 days ago -> not again.
    profile = customer(order("o1", "PH-1", paid=at(days=-3)), order("o2", "PB-1", paid=at(days=-5)))
    chat = Chat(profile=profile)
    chat.customer(analysis("X20怎么设置NFC", Intent.usage_howto, 0.9, skus=["PH-1"]))
    chat.agent("亲，在设置里打开NFC就可以")
    actions = chat.customer(_thanks())
    assert "cross_sell" not in types(actions)
    assert make_policy().explain(chat.state, _thanks(), at(10))["cross_sell"]["rejected"]["PB-1"] == "just_bought"  # type: ignore[arg-type]
    # A consumable (the rash cream) bought last week may still be suggested.
    _, actions = _solved_diaper_chat(profile=customer(order("o1", "DP-M", paid=at(days=-3)),
                                                      order("o3", "RC-1", paid=at(days=-7))))
    assert of_type(actions, "cross_sell")[0].sku == "RC-1"


def test_at_most_one_cross_sell_per_conversation_unless_accepted() -> None:
    chat, actions = _solved_diaper_chat()
    assert len(of_type(actions, "cross_sell")) == 1
    chat.customer(_diaper_question())
    chat.agent("L码9-14kg")
    again = chat.customer(_thanks())
    assert "cross_sell" not in types(again)


def test_accepted_cross_sell_frees_the_slot_for_another() -> None:
    chat, actions = _solved_diaper_chat()
    shown = of_type(actions, "cross_sell")[0]
    chat.state = chat.engine.feedback(chat.state, suggestion_id=shown.id, outcome="accepted", ts=at(20)).state
    chat.customer(_diaper_question())
    chat.agent("L码9-14kg")
    again = of_type(chat.customer(_thanks()), "cross_sell")
    assert [a.sku for a in again] == ["WP-1"]  # never the same one twice


def test_dismissed_cross_sell_is_never_offered_again() -> None:
    engine = make_engine({"cross_sell": {"max_per_conversation": 5}})
    chat, actions = _solved_diaper_chat(engine=engine)
    shown = of_type(actions, "cross_sell")[0]
    chat.state = chat.engine.feedback(chat.state, suggestion_id=shown.id, outcome="dismissed", ts=at(20)).state
    chat.customer(_diaper_question())
    chat.agent("L码9-14kg")
    again = of_type(chat.customer(_thanks()), "cross_sell")
    assert again and again[0].sku != "RC-1"
    assert "RC-1" in chat.state.dismissed_skus


def test_need_voiced_earlier_counts_when_the_moment_comes() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("宝宝最近有点红屁屁，纸尿裤怎么选码", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    chat.agent("亲，12斤建议穿M码")
    cs = of_type(chat.customer(_thanks()), "cross_sell")
    assert cs[0].sku == "RC-1"
    assert "顾客提到「红屁屁」" in cs[0].reason and "trigger=红屁屁" in cs[0].evidence


def test_allergy_need_points_to_the_hypoallergenic_line() -> None:
    chat = Chat(profile=customer(order("o1", "FM-1", paid=at(days=-10))))
    chat.customer(analysis("宝宝喝了有点过敏起疹子", Intent.usage_howto, 0.8, hits=[("fm-allergy", 0.8)]))
    chat.agent("亲，先观察一下，严重请就医")
    cs = of_type(chat.customer(_thanks()), "cross_sell")
    assert cs[0].sku == "FM-LA"
    assert cs[0].reason.startswith("10天前买了澳牧源 奶粉 1段；顾客提到「过敏」")


def test_winter_pipe_need_points_to_the_antifreeze_kit() -> None:
    chat = Chat(profile=customer(order("o1", "WH-1", paid=at(days=-40), status="delivered")))
    chat.customer(analysis("冬天水管冻了热水器不热怎么调", Intent.usage_howto, 0.9, hits=[("wh-not-hot", 0.85)]))
    chat.agent("亲，把温度调到50℃试试")
    cs = of_type(chat.customer(_thanks()), "cross_sell")
    assert cs[0].sku == "AC-1"
    assert "顾客提到「冬天」" in cs[0].reason


def test_need_alone_does_not_pull_a_product_from_an_unrelated_domain() -> None:
    # The customer talks about earbuds; "过敏" there must not pull the infant formula line.
    chat = Chat(profile=customer(order("o1", "EP-1", paid=at(days=-3))))
    chat.customer(analysis("耳机戴久了耳朵过敏怎么办", Intent.usage_howto, 0.7, hits=[("ep-volume-low", 0.7)],
                           skus=["EP-1"]))
    chat.agent("亲，建议每次佩戴不超过2小时")
    actions = chat.customer(_thanks())
    assert "cross_sell" not in types(actions)
    explained = make_policy().explain(chat.state, _thanks(), at(10))  # type: ignore[arg-type]
    assert explained["cross_sell"]["rejected"]["FM-LA"] == "need_in_other_domain"


def test_agent_resolve_opens_the_moment() -> None:
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("纸尿裤M码和L码区别", Intent.usage_howto, 0.8, hits=[("dp-size", 0.8)]))
    chat.agent("M码6-11kg，L码9-14kg")
    step = chat.engine.resolve(chat.state, ts=at(10))
    cs = of_type(step.actions, "cross_sell")
    assert cs and cs[0].details["solved_by"] == "agent_resolved"
    assert cs[0].id.endswith(":resolve:cross_sell:1")


def test_cross_sell_limit_is_configured_not_hard_coded() -> None:
    engine = make_engine({"cross_sell": {"max_per_conversation": 2}})
    chat, actions = _solved_diaper_chat(engine=engine)
    assert of_type(actions, "cross_sell")[0].sku == "RC-1"
    chat.customer(_diaper_question())
    chat.agent("L码9-14kg")
    assert [a.sku for a in of_type(chat.customer(_thanks()), "cross_sell")] == ["WP-1"]


def test_purchase_decision_closes_a_presale_question() -> None:
    chat = Chat()
    chat.customer(analysis("X20有NFC吗", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)], skus=["PH-1"]))
    chat.agent("有的亲，支持NFC")
    asking = chat.customer(analysis("续航怎么样", Intent.presale_product, 0.6, hits=[("dp-size", 0.7)]))
    assert "cross_sell" not in types(asking)  # still asking: not the moment
    decided = of_type(chat.customer(analysis("好 那就它了", Intent.greeting_thanks, 0.9, sentiment="positive")),
                      "cross_sell")
    assert decided and decided[0].sku == "PB-1" and "顾客提到「续航」" in decided[0].reason


def test_the_same_target_from_two_relations_is_one_candidate() -> None:
    chat, _ = _solved_diaper_chat()
    found = make_policy().explain(chat.state, _thanks(), at(10))["cross_sell"]["candidates"]  # type: ignore[arg-type]
    skus = [c[0] for c in found]
    assert len(skus) == len(set(skus))


def test_asking_about_the_complement_the_agent_named_is_the_moment() -> None:
    # "护臀霜多少钱" is a question, but about the complement itself: show it (with its script),
    # the customer's own question was answered in the step before
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("纸尿裤怎么选码", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    chat.agent("亲，12斤建议穿M码，屁股容易红的话可以备一支护臀霜")
    cs = of_type(chat.customer(analysis("护臀霜多少钱？", Intent.presale_product, 0.8)), "cross_sell")
    assert [c.sku for c in cs] == ["RC-1"]
    assert "护臀霜" in cs[0].reason


def test_a_target_named_while_the_question_is_open_is_not_asked_for() -> None:
    # a new question that happens to name a complement, with nothing answered yet and the agent
    # silent about it: answer first
    chat = Chat(profile=customer(order("o1", "DP-M", paid=at(days=-3))))
    first = chat.customer(analysis("护臀霜和纸尿裤怎么选码", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    assert not of_type(first, "cross_sell")


def test_target_terms_leave_out_brand_source_and_need_words() -> None:
    from assist.policy.facts import target_terms


    terms = target_terms(make_shop())
    assert "护臀霜" in terms["RC-1"]
    assert not any("纸尿裤" in t for t in terms["RC-1"])  # the relation's source product
    assert "屁屁" not in terms.get("WP-1", ())  # shared with the need word 红屁屁
