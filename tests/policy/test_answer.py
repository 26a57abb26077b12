"""``answer`` / ``clarify``: KB answers, order-status answers, clarify questions and when not to ask."""

from __future__ import annotations

from policy_build import Chat, analysis, at, customer, of_type, order, types

from assist.types import Intent


def test_bare_greeting_at_the_start_is_answered_with_an_offer_to_help() -> None:
    chat = Chat()
    actions = chat.customer(analysis("在吗", Intent.greeting_thanks, 0.95))
    assert types(actions) == ["clarify"] and actions[0].script == "亲，在的～请问有什么可以帮您？"
    chat.agent("在的亲")
    assert chat.customer(analysis("你好", Intent.greeting_thanks, 0.95)) == []


def test_near_miss_kb_entry_is_asked_about_on_the_first_turn_only() -> None:
    chat = Chat()
    first = chat.customer(analysis("耳机音量", Intent.usage_howto, 0.8, hits=[("ep-volume-low", 0.45)]))
    assert types(first) == ["clarify"] and first[0].kb_id == "ep-volume-low"
    assert "您是想问「蓝牙耳机声音太小怎么办？」吗" in first[0].script
    later = chat.customer(analysis("那左耳呢", Intent.usage_howto, 0.8, hits=[("ep-volume-low", 0.45)]))
    assert "clarify" not in types(later)


def test_near_miss_about_another_product_is_not_asked_about() -> None:
    chat = Chat(profile=customer(order("o1", "FM-1", paid=at(days=-3))))
    chat.customer(analysis("奶粉怎么冲", Intent.usage_howto, 0.9, hits=[("fm-allergy", 0.8)]))
    actions = chat.customer(analysis("水温呢", Intent.usage_howto, 0.7, hits=[("wh-not-hot", 0.4)]))
    assert "clarify" not in types(actions)


def test_vague_product_problem_with_nothing_found_asks_what_happens() -> None:
    actions = Chat().customer(analysis("热水器不好使了", Intent.product_defect, 0.9))
    assert types(actions) == ["clarify"] and actions[0].rule == "answer.clarify_generic"


def test_thanks_read_as_a_question_gets_no_clarify() -> None:
    chat = Chat()
    chat.customer(analysis("热水器水不热", Intent.usage_howto, 0.9, hits=[("wh-not-hot", 0.85)]))
    chat.agent("温度调到50℃试试")
    actions = chat.customer(analysis("调到45好多了 谢谢哈", Intent.usage_howto, 0.3, sentiment="positive"))
    assert "clarify" not in types(actions)


def test_answer_cites_the_kb_entry_and_its_score() -> None:
    a = of_type(Chat().customer(analysis("宝宝屁股红红的", Intent.usage_howto, 0.9, hits=[("dp-rash", 0.77)])),
                "answer")[0]
    assert a.kb_id == "dp-rash" and a.script == "勤换尿布，薄涂氧化锌护臀霜。" and "kb=dp-rash(0.77)" in a.evidence
    assert a.sku == "RC-1"  # the entry's only SKU
