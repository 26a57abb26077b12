"""Text -> features: the word lists behind confirmation, retry, threats, safety, repeat contact, needs.

Each list is checked on the phrasing it is for and on the look-alikes it must leave alone (taken
from the kind of messages customers really send)."""

from __future__ import annotations

import pytest
from policy_build import T0, analysis, make_policy

from assist.state import new_state
from assist.types import Intent

POLICY = make_policy()


def _signals(text: str, intent: Intent = Intent.other) -> object:
    return POLICY.customer_signals(analysis(text, intent))


@pytest.mark.parametrize(("text", "expected"), [
    ("好的谢谢，解决了", True), ("可以了 谢谢", True), ("解决啦", True), ("原来是这样", True), ("好的亲", True),
    ("谢谢 我先试试", False), ("你们解决了吗", False), ("不可以了", False), ("好的，那L码有吗", False),
    ("退款显示成功了 可银行卡没钱啊", False), ("感谢你们的高效处理，12315见", False), ("还是不行 谢谢", False),
    # a purchase decision closes a presale question
    ("好 那就它了", True), ("行 那我拍远山蓝的", True), ("那我买哪个好", False), ("我买的东西坏了", False),
    ("热水器不好使了", False), ("还是不正常了", False),
])
def test_confirmation(text: str, expected: bool) -> None:
    assert _signals(text).confirmed is expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "expected"), [
    ("按你说的调了还是不行", True), ("重置了好几次也不行", True), ("试过了 没用", True), ("还是很小声", True),
    ("依然没有热水", True), ("按说明书操作了还是没反应", True),
    ("按您说的弄好了，能连上了", False), ("大包划算还是小包划算", False), ("冷藏还是冷冻", False),
    ("还没用过", False), ("这款对甲醛有没有效果", False),
])
def test_retry(text: str, expected: bool) -> None:
    assert _signals(text).retry is expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "words"), [
    ("再不处理我就打12315", ["12315"]), ("我要去消协投诉你们", ["消协", "投诉你们"]), ("曝光你们", ["曝光"]),
    ("怎么投诉快递员", []), ("差评返现是真的吗", []), ("看到有差评说会漏", []), ("电话123156789", []),
])
def test_threat_words(text: str, words: list[str]) -> None:
    assert _signals(text).threat == words  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "hit"), [
    ("热水器附近有煤气味", True), ("充电宝鼓包了", True), ("插座冒烟了", True),
    ("充电宝会鼓包吗", False), ("没有漏电吧", False),
])
def test_safety_words(text: str, hit: bool) -> None:
    assert bool(_signals(text).safety) is hit  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "hit"), [
    ("这是我第三次来问了", True), ("问了好几次了", True), ("上次说给我回电话", True), ("一直没人处理", True),
    ("第一次买你们家的", False), ("上次买的很好用", False),
])
def test_repeat_contact(text: str, hit: bool) -> None:
    assert _signals(text).repeat_contact is hit  # type: ignore[attr-defined]


def test_needs_come_from_the_shops_relation_triggers() -> None:
    assert set(_signals("宝宝屁股红 还有点红屁屁").needs) == {"红屁屁", "屁股红"}  # type: ignore[attr-defined]
    assert _signals("今年冬天好冷").needs == ["冬天"]  # type: ignore[attr-defined]
    assert _signals("你好").needs == []  # type: ignore[attr-defined]


def test_family_follows_the_configured_intent_families() -> None:
    assert _signals("怎么用", Intent.usage_howto).family == "product"  # type: ignore[attr-defined]
    assert _signals("谢谢", Intent.greeting_thanks).family is None  # type: ignore[attr-defined]
    custom = make_policy({"families": {"product": ["usage_howto"], "after_sales": ["product_defect"]}})
    assert custom.customer_signals(analysis("坏了", Intent.product_defect)).family == "after_sales"


@pytest.mark.parametrize(("text", "holding"), [
    ("在的亲～", True), ("稍等，我帮您查一下", True), ("亲，我这边帮您查询一下哦", True),
    ("亲，先把音量调到最大试试", False), ("您好，这款支持NFC的", False),
])
def test_agent_holding_replies(text: str, holding: bool) -> None:
    assert POLICY.agent_signals(new_state("c"), text, T0).holding is holding


def test_batch_numbers_are_read_for_the_quality_report() -> None:
    assert _signals("[图片] 批号B2409 赶紧给我换").batch == "B2409"  # type: ignore[attr-defined]
    assert _signals("批次：b-2410").batch == "B-2410"  # type: ignore[attr-defined]
    assert _signals("批号在哪看").batch is None  # type: ignore[attr-defined]


def test_a_confirmation_read_with_a_weak_intent_opens_no_new_problem() -> None:
    s = POLICY.customer_signals(analysis("那我今晚先按你说的弄 谢谢哈", Intent.usage_howto, 0.3))
    assert s.confirmed and s.family is None
    assert POLICY.customer_signals(analysis("谢谢 发票怎么开", Intent.invoice, 0.9)).family == "admin"
