"""Agent-turn quality checks (DESIGN §5): each code fires on its case, spans point into the text,
and the common look-alikes (第一时间, 最近, 订单号, 一定要) do not fire."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from policy_build import CST, T0, Chat, analysis, at, customer, make_engine, make_policy, order

from assist.policy.promises import parse_count
from assist.policy.quality import cn_id_ok, luhn_ok
from assist.state import OrderEvent, new_state
from assist.types import Intent


def _alerts(text: str, now: datetime = T0, overrides: dict | None = None) -> dict[str, object]:  # type: ignore[type-arg]
    policy = make_policy(overrides)
    actions = policy.check_agent_turn(new_state("c1"), text, now, turn_id="a1")
    assert all(str(a.type) == "qa_alert" for a in actions)
    return {a.details["code"]: a for a in actions}


@pytest.mark.parametrize(("text", "code", "match"), [
    ("亲，我保证这个绝对不会坏", "forbidden_promise", "保证"),
    ("这款是全网最好的热水器", "superlative", "全网最好"),
    ("我们家销量第一", "superlative", "第一"),
    ("国家级品质，顶级用料", "superlative", "国家级"),
    ("你是不是傻，说明书不会看吗", "rude", "你是不是傻"),
    ("爱买不买", "rude", "爱买不买"),
])
def test_word_list_checks_fire_with_the_offending_span(text: str, code: str, match: str) -> None:
    alerts = _alerts(text)
    assert code in alerts
    a = alerts[code]
    start, end = a.details["span"]  # type: ignore[attr-defined]
    assert text[start:end] == match
    assert a.details["match"] == match  # type: ignore[attr-defined]
    assert a.id == f"a1:qa_alert:{[*alerts].index(code) + 1}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", [
    "亲，第一时间给您处理",
    "最近单量比较大，请您耐心等待",
    "冬天一定要记得放水防冻哦",
    "不一定是质量问题，我们先看看",
    "扫地机的滚刷需要定期清理",
    "亲，您可以自己看一下说明书第3页",
    "订单号 2048123412341234567 已为您备注",
    "亲，这边帮您查询一下",
    # a negated or refused promise is the honest answer, not a forbidden promise
    "这个不能保证哦亲", "到货时间不保证的", "快递这边我们保证不了", "没法给您打包票，只能尽量催",
])
def test_look_alikes_do_not_fire(text: str) -> None:
    assert _alerts(text) == {}


def test_personal_data_is_reported_masked() -> None:
    text = "好的，已登记手机13812345678，身份证11010519491231002X，卡号6217001234567890122"
    a = _alerts(text)["personal_data"]
    assert a.details["kinds"] == ["mobile", "id_card", "bank_card"]  # type: ignore[attr-defined]
    assert a.details["match"] == "138****5678"  # type: ignore[attr-defined]
    assert "13812345678" not in str(a.details) and "13812345678" not in a.reason  # type: ignore[attr-defined]
    spans = a.details["spans"]  # type: ignore[attr-defined]
    assert text[spans[1]["start"]:spans[1]["end"]] == "11010519491231002X"


def test_addresses_are_personal_data() -> None:
    assert "personal_data" in _alerts("给您寄到杭州市西湖区文三路100号")
    assert "personal_data" in _alerts("地址是阳光花园3栋2单元501室对吧")


def test_checksums_keep_order_numbers_out() -> None:
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("110105194912310021")
    assert luhn_ok("6217001234567890122") and not luhn_ok("6217001234567890120")
    assert "personal_data" not in _alerts("订单号6217001234567890120")


def test_deadline_promise_is_tracked_with_its_due_time_and_absorbs_yiding() -> None:
    alerts = _alerts("亲，明天一定给您发货")
    assert set(alerts) == {"promise_tracked"}  # not also forbidden_promise for the 一定
    p = alerts["promise_tracked"]
    assert p.details["kind"] == "ship" and p.details["deadline"] == "明天"  # type: ignore[attr-defined]
    assert datetime.fromisoformat(p.details["due"]) == datetime(2026, 11, 24, 23, 59, 59, tzinfo=CST)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "due"), [
    ("24小时内给您退款", T0 + timedelta(hours=24)),
    ("两小时内给您回复", T0 + timedelta(hours=2)),
    ("今天之内给您处理好", datetime(2026, 11, 23, 23, 59, 59, tzinfo=CST)),
    ("3个工作日内退款到账", datetime(2026, 11, 26, 23, 59, 59, tzinfo=CST)),  # Mon -> Thu
    ("本周内安排师傅上门", datetime(2026, 11, 29, 23, 59, 59, tzinfo=CST)),
])
def test_deadlines(text: str, due: datetime) -> None:
    p = _alerts(text)["promise_tracked"]
    assert datetime.fromisoformat(p.details["due"]) == due  # type: ignore[attr-defined]


def test_hedged_estimates_are_not_promises() -> None:
    assert "promise_tracked" not in _alerts("预计明天发货，一般48小时内发出")
    assert "promise_tracked" not in _alerts("您可以今天申请退款")


def test_parse_count() -> None:
    assert [parse_count(s) for s in ("24", "两", "十", "十二", "二十四", "三十")] == [24, 2, 10, 12, 24, 30]
    assert parse_count("几") is None


def test_slow_first_response_is_measured_from_the_first_customer_turn() -> None:
    chat = Chat()
    chat.customer(analysis("在吗", Intent.greeting_thanks, 0.9))
    alerts = chat.agent("在的亲", seconds=40)
    assert [a.details["code"] for a in alerts] == ["slow_first_response"]
    assert alerts[0].details["seconds"] == 40.0
    assert chat.state.first_response_s == 40.0


def test_fast_first_response_is_fine_and_threshold_is_configured() -> None:
    chat = Chat()
    chat.customer(analysis("在吗", Intent.greeting_thanks, 0.9))
    assert chat.agent("在的亲", seconds=10) == []
    strict = Chat(engine=make_engine({"qa": {"first_response_seconds": 5}}))
    strict.customer(analysis("在吗", Intent.greeting_thanks, 0.9))
    assert [a.details["code"] for a in strict.agent("在的亲", seconds=10)] == ["slow_first_response"]


def test_repeated_slow_replies_are_flagged_at_the_configured_count() -> None:
    chat = Chat()
    chat.customer(analysis("在吗", Intent.greeting_thanks, 0.9))
    chat.agent("在的", seconds=5)
    chat.customer(analysis("耳机声音小", Intent.usage_howto, 0.9))
    assert chat.agent("调大音量", seconds=90) == []  # first slow one: counted
    chat.customer(analysis("还有别的办法吗", Intent.usage_howto, 0.9))
    alerts = chat.agent("重置一下", seconds=120)
    assert [a.details["code"] for a in alerts] == ["slow_response"] and alerts[0].details["count"] == 2


def test_promise_is_kept_by_the_matching_event() -> None:
    engine = make_engine()
    chat = Chat(engine=engine, profile=customer(order("o1", "DP-M", status="paid", paid=at(hours=-2))))
    chat.customer(analysis("什么时候发货", Intent.logistics, 0.9))
    chat.agent("亲，明天给您发货")
    assert [p.status for p in chat.state.open_promises] == ["open"]
    step = engine.order_event(chat.state, OrderEvent(order_id="o1", type="shipped", ts=at(hours=10)))
    assert [p.status for p in step.state.open_promises] == ["kept"]
    assert engine.tick(step.state, at(days=3)).actions == []


def test_broken_promise_is_alerted_once_after_its_deadline() -> None:
    engine = make_engine()
    chat = Chat(engine=engine, profile=customer(order("o1", "DP-M", status="paid", paid=at(hours=-2))))
    chat.customer(analysis("什么时候发货", Intent.logistics, 0.9))
    chat.agent("亲，明天一定给您发货")
    assert engine.tick(chat.state, at(hours=20)).actions == []  # not yet due
    step = engine.tick(chat.state, at(days=2))
    assert [a.details["code"] for a in step.actions] == ["promise_overdue"]
    assert step.actions[0].details["match"] == "亲，明天一定给您发货"
    assert engine.tick(step.state, at(days=3)).actions == []
    assert [p.status for p in step.state.open_promises] == ["overdue"]


def test_qa_word_lists_are_data() -> None:
    assert "rude" not in _alerts("亲，您这个问题太奇葩了")
    extended = _alerts("亲，您这个问题太奇葩了", overrides={"qa": {"checks": {"rude": {"match+": ["奇葩"]}}}})
    assert extended["rude"].details["match"] == "奇葩"  # type: ignore[attr-defined]
