"""Usage question vs product defect: guidance first, defect (escalate + quality report) after it failed."""

from __future__ import annotations

from policy_build import Chat, analysis, at, customer, of_type, order, types

from assist.types import Intent


def _volume_low(**kw: object) -> object:
    # "声音太小" sounds like a defect, but the KB answer is guidance (a usage_howto entry).
    defaults = dict(intent=Intent.product_defect, conf=0.55, top=[("usage_howto", 0.4)], sentiment="negative",
                    hits=[("ep-volume-low", 0.82)], skus=["EP-1"])
    defaults.update(kw)
    return analysis("耳机声音太小了，是不是坏了", **defaults)  # type: ignore[arg-type]


def _earbud_buyer() -> object:
    return customer(order("o1", "EP-1", paid=at(days=-10), batch="B2411", region="浙江杭州"), tier="vip")


def test_usage_question_gets_guidance_citing_the_kb_entry() -> None:
    chat = Chat()
    actions = chat.customer(analysis("蓝牙耳机声音太小怎么调", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.85)]))
    assert types(actions) == ["answer"]
    answer = actions[0]
    assert answer.kb_id == "ep-volume-low"
    assert answer.script.startswith("亲，先把手机媒体音量")
    assert "kb=ep-volume-low(0.85)" in answer.evidence and "intent=usage_howto(0.90)" in answer.evidence
    assert not of_type(actions, "escalate") and not of_type(actions, "quality_report")


def test_defect_sounding_question_with_guidance_answer_gets_answer_and_clarify() -> None:
    chat = Chat()
    actions = chat.customer(_volume_low())
    assert types(actions) == ["answer", "clarify"]
    assert actions[0].kb_id == "ep-volume-low"
    assert actions[1].script.startswith("亲，想跟您确认一下：您是已经按说明调过了吗？")
    assert actions[1].details["kind"] == "tried_guidance"
    assert not of_type(actions, "escalate")


def test_close_usage_defect_call_is_ambiguous_even_when_usage_wins() -> None:
    chat = Chat()
    a = analysis("耳机声音小", Intent.usage_howto, 0.5, top=[("product_defect", 0.4)], hits=[("ep-volume-low", 0.8)])
    assert types(chat.customer(a)) == ["answer", "clarify"]


def test_same_problem_after_guidance_is_a_defect_escalated_and_reported_with_sku_batch_region() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(_volume_low())
    chat.agent("亲，先把手机音量和耳机音量都调到最大试试～")
    actions = chat.customer(analysis("按你说的调了，还是很小", Intent.product_defect, 0.7, sentiment="negative",
                                     hits=[("ep-volume-low", 0.7)]))
    # Handle first (escalate, file the report), then compensate (rank.rule_priority: recovery.defect).
    assert types(actions)[:2] == ["escalate", "quality_report"] and types(actions)[-1] == "recovery"
    report = of_type(actions, "quality_report")[0]
    assert report.details["sku"] == "EP-1"
    assert report.details["batch"] == "B2411" and report.details["region"] == "浙江杭州"
    assert report.details["order_id"] == "o1" and report.details["kind"] == "failed_guidance"
    assert "耳机声音太小了" in report.details["symptom"]  # the original description travels with it
    recovery = of_type(actions, "recovery")[0]
    assert recovery.details["case"] == "defect" and recovery.details["remedy"] == "优先换新"  # vip allowance
    assert recovery.details["coupon_yuan"] == 30
    # The guidance that failed is not proposed again.
    assert not [a for a in of_type(actions, "answer") if a.kb_id == "ep-volume-low"]
    assert chat.state.problem is not None and chat.state.problem.defect_reported


def test_product_defect_intent_after_guidance_is_a_defect_without_retry_words() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(analysis("耳机声音小怎么办", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.85)]))
    chat.agent("亲，音量调到最大试试")
    actions = chat.customer(analysis("左耳完全没声音了", Intent.product_defect, 0.8, sentiment="negative"))
    assert "quality_report" in types(actions) and "escalate" in types(actions)
    assert of_type(actions, "quality_report")[0].details["kind"] == "reported_after_guidance"


def test_yes_to_the_clarify_question_confirms_the_defect() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(_volume_low())
    actions = chat.customer(analysis("是的 调过了", Intent.other, 0.5))
    assert "quality_report" in types(actions)
    assert of_type(actions, "quality_report")[0].details["kind"] == "failed_guidance"


def test_no_to_the_clarify_question_keeps_it_a_usage_problem() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(_volume_low())
    actions = chat.customer(analysis("没有，我不知道要调哪里", Intent.usage_howto, 0.8, hits=[("ep-volume-low", 0.8)]))
    assert "quality_report" not in types(actions) and "escalate" not in types(actions)
    # The clarify question is asked once, never again on the same problem.
    assert "clarify" not in types(actions)


def test_visible_damage_is_a_direct_defect_reported_without_escalation() -> None:
    chat = Chat(profile=customer(order("o2", "EP-1", paid=at(days=-5), batch="B2410", region="江苏南京")))
    actions = chat.customer(analysis("耳机刚收到充电仓就裂了", Intent.product_defect, 0.9, skus=["EP-1"]))
    assert "quality_report" in types(actions) and "recovery" in types(actions)
    assert "escalate" not in types(actions)  # the front line handles an exchange
    report = of_type(actions, "quality_report")[0]
    assert report.details["kind"] == "direct" and "damage=裂了" in report.evidence
    assert (report.details["batch"], report.details["region"]) == ("B2410", "江苏南京")


def test_defect_description_without_damage_gets_troubleshooting_first() -> None:
    # The KB files "不出热水" under product_defect, but its answer starts with checks to do.
    chat = Chat()
    actions = chat.customer(analysis("热水器不出热水", Intent.product_defect, 0.9, hits=[("wh-defect", 0.85)]))
    assert types(actions) == ["answer"] or types(actions) == ["answer", "care"]
    assert actions[0].kb_id == "wh-defect"


def test_customer_who_already_tried_is_a_defect_on_the_first_turn() -> None:
    chat = Chat(profile=customer(order("o2", "EP-1", paid=at(days=-5), batch="B2410", region="江苏南京")))
    actions = chat.customer(analysis("耳机重置后还是一边没声音", Intent.product_defect, 0.9,
                                     hits=[("ep-silent-after-reset", 0.9)], skus=["EP-1"]))
    assert {"escalate", "quality_report", "recovery", "answer"} == set(types(actions))
    assert of_type(actions, "quality_report")[0].details["kind"] == "failed_guidance"


def test_safety_hazard_escalates_at_once() -> None:
    chat = Chat()
    actions = chat.customer(analysis("充电宝鼓包了还发烫", Intent.product_defect, 0.9, sentiment="negative",
                                     hits=[("pb-swelling", 0.9)], skus=["PB-1"]))
    assert types(actions)[0] == "escalate"
    assert actions[0].rule == "escalation.safety"
    assert "停止使用" in actions[0].script
    assert "quality_report" in types(actions)


def test_safety_words_in_a_question_are_not_a_hazard() -> None:
    chat = Chat()
    actions = chat.customer(analysis("充电宝会鼓包吗", Intent.presale_product, 0.9))
    assert "escalate" not in types(actions)


def test_report_is_kept_in_front_of_the_agent_until_acted_on() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(_volume_low())
    first = chat.customer(analysis("试过了 还是不行", Intent.product_defect, 0.8, sentiment="negative"))
    report = of_type(first, "quality_report")[0]
    # Still describing the defect, report not filed: shown again.
    again = chat.customer(analysis("左耳还是没声音啊", Intent.product_defect, 0.8, sentiment="negative"))
    assert "quality_report" in types(again)
    assert "recovery" not in types(again)  # the exchange was offered once
    chat.state = chat.engine.feedback(chat.state, suggestion_id=report.id, outcome="accepted", ts=at(30)).state
    # Once filed, never again; questions about the exchange get answers, not reports.
    later = chat.customer(analysis("左耳就是没声音", Intent.product_defect, 0.8, sentiment="negative"))
    assert "quality_report" not in types(later)


def test_refund_question_about_a_known_defect_stays_on_it_and_a_batch_number_updates_the_report() -> None:
    chat = Chat(profile=customer(order("o2", "WP-1", paid=at(days=-5), region="河南郑州")))
    chat.customer(analysis("湿巾打开一股酸味 还有黄点点", Intent.product_defect, 0.8, sentiment="negative"))
    problem_id = chat.state.problem.id if chat.state.problem else None
    actions = chat.customer(analysis("批号B2410 照片发了 给我退款", Intent.refund, 0.6, sentiment="negative"))
    assert chat.state.problem is not None and chat.state.problem.id == problem_id  # not a new "refund" problem
    report = of_type(actions, "quality_report")[0]
    assert report.details["batch"] == "B2410" and report.details["region"] == "河南郑州"


def test_damage_in_transit_is_not_a_quality_report() -> None:
    chat = Chat()
    actions = chat.customer(analysis("净化器收到外壳裂了一块 箱子也是瘪的", Intent.product_defect, 0.95,
                                     sentiment="negative"))
    assert "quality_report" not in types(actions)


def test_customer_who_has_not_tried_yet_is_not_reporting_a_defect() -> None:
    chat = Chat(profile=_earbud_buyer())
    chat.customer(analysis("耳机没声音了", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.85)]))
    chat.agent("亲，先重置一下耳机试试")
    actions = chat.customer(analysis("没试过 就左边那只没声", Intent.product_defect, 0.85, sentiment="negative"))
    assert "quality_report" not in types(actions) and "escalate" not in types(actions)


def test_a_misread_follow_up_question_is_not_a_defect_report() -> None:
    # "水温呢" read as product_defect with low confidence after guidance is just the next question.
    chat = Chat(profile=_earbud_buyer())
    chat.customer(analysis("耳机声音小怎么调", Intent.usage_howto, 0.9, hits=[("ep-volume-low", 0.85)]))
    chat.agent("亲，音量调到最大试试")
    actions = chat.customer(analysis("那降噪怎么开", Intent.product_defect, 0.55, sentiment="negative"))
    assert "quality_report" not in types(actions)


def test_guidance_is_told_by_the_hits_own_intent_so_entries_added_later_count() -> None:
    # An entry created through the KB API after the policy was built is known only through the hit.
    base = _volume_low()
    added = base.kb.hits[0].model_copy(update={"kb_id": "ep-volume-added-later"})  # type: ignore[attr-defined]
    turn = base.model_copy(update={"kb": base.kb.model_copy(update={"hits": [added]})})  # type: ignore[attr-defined]
    actions = Chat().customer(turn)
    assert types(actions) == ["answer", "clarify"] and actions[0].kb_id == "ep-volume-added-later"
    # The same hit without an intent label is no guidance entry: no "did you try it" question.
    unlabelled = turn.model_copy(update={"kb": turn.kb.model_copy(  # type: ignore[attr-defined]
        update={"hits": [added.model_copy(update={"intent": None})]})})
    assert not of_type(Chat().customer(unlabelled), "clarify")
