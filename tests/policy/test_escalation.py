"""Escalate early: strong anger, threats, repeated unresolved contact; configured thresholds."""

from __future__ import annotations

import pytest
from policy_build import Chat, analysis, at, customer, make_engine, of_type, order, types

from assist.types import Intent


def test_strong_anger_escalates_above_the_answer() -> None:
    chat = Chat()
    actions = chat.customer(analysis("耳机声音这么小 你们到底管不管", Intent.product_defect, 0.6, sentiment="negative",
                                     score=-0.95, emotion="anger", intensity=0.95, hits=[("ep-volume-low", 0.8)]))
    assert types(actions)[0] == "escalate"
    esc = actions[0]
    assert esc.rule == "escalation.anger" and "顾客情绪非常激动" in esc.reason
    assert any(e.startswith("sentiment=negative/anger") for e in esc.evidence)
    assert "answer" in types(actions)  # the guidance is still there, below


def test_anger_below_the_threshold_and_anxiety_do_not_escalate() -> None:
    chat = Chat()
    actions = chat.customer(analysis("有点烦 耳机声音小", Intent.usage_howto, 0.8, sentiment="negative",
                                     emotion="anger", intensity=0.8, hits=[("ep-volume-low", 0.8)]))
    assert "escalate" not in types(actions)
    # Anxiety, however intense, is cared for, not escalated.
    actions = Chat().customer(analysis("急死了 宝宝屁股红红的", Intent.usage_howto, 0.8, sentiment="negative",
                                       emotion="anxiety", intensity=0.99, hits=[("dp-rash", 0.8)]))
    assert "escalate" not in types(actions) and "care" in types(actions)


def test_relieved_swearing_with_thanks_is_not_anger() -> None:
    chat = Chat()
    chat.customer(analysis("耳机声音小", Intent.usage_howto, 0.8, hits=[("ep-volume-low", 0.8)]))
    chat.agent("关掉绝对音量试试")
    actions = chat.customer(analysis("卧槽 真是这个 关了就正常了 谢谢谢谢", Intent.greeting_thanks, 0.5,
                                     sentiment="negative", score=-0.3, emotion="anger", intensity=0.95))
    assert "escalate" not in types(actions)


def test_anger_threshold_is_configured() -> None:
    a = analysis("有点烦 耳机声音小", Intent.usage_howto, 0.8, sentiment="negative", emotion="anger", intensity=0.5)
    chat = Chat(engine=make_engine({"escalation": {"anger_intensity": 0.4}}))
    assert "escalate" in types(chat.customer(a))


@pytest.mark.parametrize("text", ["再不处理我就打12315", "我要曝光你们", "给你们差评", "我找律师告你们", "我要去消协投诉"])
def test_threats_escalate(text: str) -> None:
    chat = Chat()
    actions = chat.customer(analysis(text, Intent.complaint, 0.8, sentiment="negative", intensity=0.4))
    esc = of_type(actions, "escalate")
    assert esc and "threat" in esc[0].details["reasons"]
    assert any(e.startswith("threat=") for e in esc[0].evidence)


@pytest.mark.parametrize("text", ["请问怎么投诉快递员", "差评返现是真的吗", "看到有差评说会漏，真的吗"])
def test_questions_about_complaints_are_not_threats(text: str) -> None:
    chat = Chat()
    assert "escalate" not in types(chat.customer(analysis(text, Intent.complaint, 0.6)))


def test_threat_word_list_is_extended_by_the_shop() -> None:
    text = "不给我退我就上黑猫"
    plain = Chat().customer(analysis(text, Intent.refund, 0.8))
    assert "escalate" in types(plain)  # 黑猫 is a default threat word
    custom = "我去找315晚会"
    assert "escalate" not in types(Chat().customer(analysis(custom, Intent.complaint, 0.8)))
    engine = make_engine({"signals": {"threat": {"match+": ["315晚会"]}}})
    assert "escalate" in types(Chat(engine=engine).customer(analysis(custom, Intent.complaint, 0.8)))


def test_repeated_unresolved_contact_escalates_at_the_configured_turn() -> None:
    chat = Chat(profile=customer(order("o9", "DP-M", status="shipped", paid=at(days=-2), shipped=at(days=-1))))
    t1 = chat.customer(analysis("快递到哪了", Intent.logistics, 0.9))
    t2 = chat.customer(analysis("怎么还没到", Intent.logistics, 0.9, sentiment="negative"))
    t3 = chat.customer(analysis("到底什么时候到", Intent.logistics, 0.9, sentiment="negative"))
    assert "escalate" not in types(t1) + types(t2)
    esc = of_type(t3, "escalate")
    assert esc and esc[0].rule == "escalation.repeat" and "同一问题已沟通3轮仍未解决" in esc[0].reason

    quick = Chat(engine=make_engine({"escalation": {"repeat_turns": 2}}))
    quick.customer(analysis("快递到哪了", Intent.logistics, 0.9))
    assert "escalate" in types(quick.customer(analysis("怎么还没到", Intent.logistics, 0.9, sentiment="negative")))


def test_calm_follow_up_questions_are_not_unresolved_contact() -> None:
    chat = Chat()
    for q in ("快递到哪了", "能发顺丰吗", "那大概几号到"):
        actions = chat.customer(analysis(q, Intent.logistics, 0.9))
    assert "escalate" not in types(actions)


def test_presale_questions_do_not_count_as_repeated_contact() -> None:
    chat = Chat()
    for q in ("M码多大", "L码多大", "XL码多大", "有拉拉裤吗"):
        actions = chat.customer(analysis(q, Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    assert "escalate" not in types(actions)


def test_customer_saying_they_came_back_again_escalates() -> None:
    chat = Chat()
    actions = chat.customer(analysis("这是我第三次来问退款了", Intent.refund, 0.9, sentiment="negative", intensity=0.5))
    esc = of_type(actions, "escalate")
    assert esc and esc[0].details["reasons"] == ["repeat"] and "多次联系" in esc[0].reason


def test_escalation_stays_proposed_while_warranted_but_opens_once() -> None:
    chat = Chat()
    chat.customer(analysis("我要投诉你们", Intent.complaint, 0.9, sentiment="negative", emotion="anger", intensity=0.9))
    again = chat.customer(analysis("投诉！！！", Intent.complaint, 0.9, sentiment="negative", emotion="anger", intensity=0.9))
    assert "escalate" in types(again)
    assert len(chat.state.open_escalations) == 1 and chat.state.escalation_open
    calm = chat.customer(analysis("好 等你们消息", Intent.greeting_thanks, 0.9))
    assert "escalate" not in types(calm)  # no reason holds on this turn


def test_escalation_once_per_problem_is_configurable() -> None:
    chat = Chat(engine=make_engine({"escalation": {"repeat_while_open": False}}))
    chat.customer(analysis("我要投诉你们", Intent.complaint, 0.9, sentiment="negative", emotion="anger", intensity=0.9))
    again = chat.customer(analysis("投诉！！！", Intent.complaint, 0.9, sentiment="negative", emotion="anger", intensity=0.9))
    assert "escalate" not in types(again)
    assert chat.state.escalation_open


def test_a_negative_complaint_is_escalated_even_without_threat_words() -> None:
    chat = Chat()
    actions = chat.customer(analysis("买的时候问客服也没说清楚", Intent.complaint, 0.8, sentiment="negative",
                                     intensity=0.5))
    esc = of_type(actions, "escalate")
    assert esc and esc[0].details["reasons"] == ["complaint"]
    unsure = chat.customer(analysis("等着", Intent.complaint, 0.4, sentiment="negative", intensity=0.3))
    assert "escalate" not in types(unsure)


def test_dismissed_escalation_can_be_proposed_again() -> None:
    chat = Chat()
    first = of_type(chat.customer(analysis("我要投诉", Intent.complaint, 0.9, sentiment="negative",
                                           emotion="anger", intensity=0.9)), "escalate")[0]
    chat.state = chat.engine.feedback(chat.state, suggestion_id=first.id, outcome="dismissed", ts=at(5)).state
    assert not chat.state.escalation_open
    again = chat.customer(analysis("我要投诉！", Intent.complaint, 0.9, sentiment="negative", emotion="anger",
                                   intensity=0.9))
    assert "escalate" in types(again)


def test_no_how_to_complain_answer_next_to_the_escalation() -> None:
    chat = Chat()
    actions = chat.customer(analysis("我要投诉你们 找律师", Intent.complaint, 0.95, sentiment="negative",
                                     emotion="anger", intensity=0.8, hits=[("thanks", 0.9)]))
    assert types(actions) == ["escalate"]
