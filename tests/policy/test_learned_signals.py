"""Decisions from the dialogue model's signals (assist.understanding.dialogue), rule by rule.

The model's output is built by hand here (as the analyses are): these tests pin what the policy
does with each learned signal, independent of how well the model reads a turn (that is measured
by ``assist eval-dialogues`` on held-out writers and shops).
"""

from __future__ import annotations

from policy_build import Chat, analysis, at, customer, make_policy, of_type, order, types

from assist.engine import Engine
from assist.types import Intent, SentimentLabel
from assist.understanding.dialogue import SIGNALS, DialogueOutput

POLICY = make_policy()


def learned(*fired: str, p: float = 0.9) -> DialogueOutput:
    probs = {s: (p if s in fired else 0.05) for s in SIGNALS}
    return DialogueOutput(signals=probs, fired=frozenset(fired), intent={}, sentiment={})


class _Fixed:
    """A stand-in for the dialogue model that says what the test wants for the next turn."""

    def __init__(self) -> None:
        self.next: DialogueOutput = learned()

    def predict(self, analysis, ctx, embedding):
        out, self.next = self.next, learned()
        return DialogueOutput(out.signals, out.fired, {analysis.intent.label.value: analysis.intent.confidence,
                                                       **{i.value: 0.0 for i in Intent
                                                          if i is not analysis.intent.label}},
                              {"negative": float(analysis.sentiment.label is SentimentLabel.negative),
                               "neutral": float(analysis.sentiment.label is SentimentLabel.neutral),
                               "positive": float(analysis.sentiment.label is SentimentLabel.positive)})


def _chat(profile=None) -> tuple[Chat, _Fixed]:
    model = _Fixed()
    return Chat(Engine(POLICY, model), profile), model  # type: ignore[arg-type]


def test_word_lists_not_overrides_are_ignored_when_the_model_ran() -> None:
    # "还是不行" is in the retry word list, but retry is not a learned override: the model decides.
    a = analysis("按你说的调了还是不行", Intent.product_defect)
    assert POLICY.customer_signals(a).retry
    assert not POLICY.customer_signals(a, learned=learned()).retry
    assert POLICY.customer_signals(a, learned=learned("guidance_failed")).retry


def test_threat_word_list_stays_an_override() -> None:
    s = POLICY.customer_signals(analysis("再不处理我就打12315", Intent.complaint), learned=learned())
    assert s.threat == ["12315"]
    s = POLICY.customer_signals(analysis("行 你们等着瞧", Intent.complaint), learned=learned("threat_insult"))
    assert s.threat == ["threat_insult"]
    s = POLICY.customer_signals(analysis("拉黑你家了 什么破店", Intent.complaint), learned=learned())
    assert s.threat == ["拉黑你家", "什么破"]  # a threat cue and an insult cue


def test_guidance_failed_in_new_words_gives_quality_report_and_escalation() -> None:
    chat, model = _chat(customer(order("o1", "WH-1", paid=at(days=-20), delivered=at(days=-15))))
    chat.customer(analysis("热水器水不热", Intent.usage_howto, hits=[("wh-not-hot", 0.9)], skus=["WH-1"]))
    chat.agent("亲，把温度调到50℃，冬季模式打开试试")
    model.next = learned("guidance_failed")
    acts = chat.customer(analysis("别的水龙头都有热水 就它凉的", Intent.usage_howto, hits=[("wh-not-hot", 0.8)]))
    assert {"quality_report", "escalate"} <= set(types(acts))


def test_solved_in_the_symptom_words_is_no_false_alarm() -> None:
    chat, model = _chat(customer(order("o1", "WH-1", paid=at(days=-20), delivered=at(days=-15))))
    chat.customer(analysis("热水器显示E1", Intent.product_defect, hits=[("wh-defect", 0.9)], skus=["WH-1"]))
    chat.agent("亲，先关掉燃气阀再打开，重新点火试试")
    model.next = learned("solved")
    acts = chat.customer(analysis("E1没了 出热水了 虚惊一场", Intent.product_defect, conf=0.95))
    assert not of_type(acts, "quality_report") and not of_type(acts, "escalate")
    assert chat.state.problem is not None and chat.state.problem.resolved


def test_human_request_escalates() -> None:
    chat, model = _chat()
    model.next = learned("human_request")
    acts = chat.customer(analysis("叫你们主管来", Intent.complaint, conf=0.5))
    assert of_type(acts, "escalate")
    assert "人工" in of_type(acts, "escalate")[0].reason or "主管" in of_type(acts, "escalate")[0].reason


def test_urgency_gets_care_without_an_anxiety_emotion() -> None:
    chat, model = _chat(customer(order("o1", "DP-M", status="paid", paid=at(hours=-30))))
    model.next = learned("urgency")
    acts = chat.customer(analysis("还没发货 宝宝明天就没得用了", Intent.logistics, skus=["DP-M"]))
    assert of_type(acts, "care")
    assert of_type(acts, "recovery")  # paid 30 h ago and not shipped


def test_presale_cross_sell_waits_for_the_customers_decision() -> None:
    chat, model = _chat(customer())
    chat.customer(analysis("宝宝20斤穿什么码", Intent.presale_product, hits=[("dp-size", 0.9)], skus=["DP-L"]))
    chat.agent("亲，20斤选L码")
    # the model reads no decision: no suggestion while the customer may still be asking
    acts = chat.customer(analysis("L码多少片", Intent.presale_product, conf=0.5))
    assert not of_type(acts, "cross_sell")
    chat.agent("L码54片")
    model.next = learned("purchase_decision")
    acts = chat.customer(analysis("那就L码吧", Intent.presale_product, conf=0.6))
    assert of_type(acts, "cross_sell")


def test_a_trigger_word_alone_is_no_relevance() -> None:
    chat, model = _chat(customer())
    # "过敏" is a trigger of the formula relation, but nothing in the conversation is about formula
    chat.customer(analysis("你们发票怎么开 我对快递盒过敏哈哈", Intent.invoice))
    chat.agent("亲，订单详情里申请电子发票就行")
    model.next = learned("solved")
    acts = chat.customer(analysis("好的 谢谢", Intent.greeting_thanks, sentiment="positive"))
    assert not of_type(acts, "cross_sell")


def test_info_provided_stays_on_the_open_problem() -> None:
    chat, model = _chat(customer(order("o1", "WH-1", paid=at(days=-20), delivered=at(days=-15))))
    chat.customer(analysis("热水器漏水了", Intent.product_defect, skus=["WH-1"]))
    chat.agent("亲，麻烦拍张照片给我看看")
    problem = chat.state.problem
    model.next = learned("info_provided")
    chat.customer(analysis("[图片]", Intent.other))
    assert chat.state.problem is not None and chat.state.problem.id == problem.id
    model.next = learned("info_provided")
    chat.customer(analysis("订单号 o1", Intent.logistics, conf=0.7))
    assert chat.state.problem.id == problem.id


def test_a_solved_fault_settles_its_escalation_but_a_threat_stays_open() -> None:
    chat, model = _chat(customer(order("o1", "WH-1", paid=at(days=-20), delivered=at(days=-15))))
    chat.customer(analysis("热水器不出热水", Intent.usage_howto, hits=[("wh-not-hot", 0.9)], skus=["WH-1"]))
    chat.agent("亲，把温度调到50℃试试")
    model.next = learned("guidance_failed")
    assert of_type(chat.customer(analysis("调了 还是凉的", Intent.product_defect, hits=[("wh-defect", 0.8)])),
                   "escalate")
    chat.agent("给您安排师傅上门")
    model.next = learned("solved")
    chat.customer(analysis("师傅修好了 出热水了 谢谢", Intent.greeting_thanks, sentiment="positive"))
    assert not chat.state.escalation_open
    chat2, model2 = _chat(customer())
    chat2.customer(analysis("再不发货我就打12315", Intent.complaint, sentiment="negative"))
    chat2.agent("非常抱歉，马上催")
    model2.next = learned("solved")
    chat2.customer(analysis("好吧 谢谢", Intent.greeting_thanks))
    assert chat2.state.escalation_open


def test_no_cross_sell_while_the_customer_is_asking_or_after_a_defect() -> None:
    chat, model = _chat(customer())
    chat.customer(analysis("宝宝20斤穿什么码", Intent.presale_product, hits=[("dp-size", 0.9)], skus=["DP-L"]))
    chat.agent("亲，20斤选L码")
    model.next = learned("purchase_decision")
    assert not of_type(chat.customer(analysis("那就L码 一共多少钱?", Intent.presale_product, conf=0.6)), "cross_sell")
    model.next = learned("purchase_decision")
    assert of_type(chat.customer(analysis("那就L码吧", Intent.presale_product, conf=0.6)), "cross_sell")


def test_no_cross_sell_after_a_product_defect_even_once_solved() -> None:
    chat, model = _chat(customer(order("o1", "DP-M", paid=at(days=-3))))
    model.next = learned("damage")
    chat.customer(analysis("纸尿裤破了好几片", Intent.product_defect, skus=["DP-M"]))
    chat.agent("给您补发一包")
    model.next = learned("solved")
    acts = chat.customer(analysis("好的 谢谢", Intent.greeting_thanks, sentiment="positive"))
    assert not of_type(acts, "cross_sell")
