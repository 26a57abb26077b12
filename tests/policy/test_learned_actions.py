"""The learned action judgment (assist.policy.learned): what it may drop, add, and never touch."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_build import Chat, analysis, at, customer, make_shop, of_type, order, types

from assist.engine import Engine
from assist.errors import ModelError
from assist.policy import Policy, load_policy_config
from assist.policy.learned import TYPES, ActionModel
from assist.types import Intent


def _model(wanted: dict[str, bool], n_features: int) -> ActionModel:
    """A model that wants exactly the types in ``wanted`` (a bias far to one side, no weights)."""
    return ActionModel(weights={t: [0.0] * n_features for t in TYPES},
                       bias={t: (6.0 if wanted.get(t) else -6.0) for t in TYPES},
                       thresholds=dict.fromkeys(TYPES, 0.5), meta={})


def _n_features() -> int:
    # the feature vector's length, read off a real decision
    chat = Chat(profile=customer())
    shop = make_shop()
    policy = Policy(shop, load_policy_config(None, shop.policy))
    s = chat.engine.customer_turn(chat.state, turn_id="t1", text="在吗", ts=at(), analysis=analysis("在吗"))
    _, feats = policy.decide_traced(s.state, analysis("在吗"), at(), trace=True)
    return len(feats)


N = _n_features()


def _engine(wanted: dict[str, bool]) -> Engine:
    shop = make_shop()
    return Engine(Policy(shop, load_policy_config(None, shop.policy), _model(wanted, N)))


def test_a_type_the_model_does_not_want_is_dropped() -> None:
    chat = Chat(_engine({"answer": False}), customer())
    acts = chat.customer(analysis("耳机声音小", Intent.usage_howto, hits=[("ep-volume-low", 0.9)]))
    assert not of_type(acts, "answer")


def test_threat_and_safety_escalations_are_never_dropped() -> None:
    chat = Chat(_engine({}), customer())
    acts = chat.customer(analysis("再不处理我就打12315", Intent.complaint, sentiment="negative"))
    assert of_type(acts, "escalate")
    chat = Chat(_engine({}), customer(order("o1", "PB-1", paid=at(days=-5))))
    acts = chat.customer(analysis("充电宝鼓包了", Intent.product_defect, skus=["PB-1"]))
    assert of_type(acts, "escalate")


def test_wanted_types_are_added_from_the_facts() -> None:
    wanted = {"escalate": True, "care": True, "clarify": True, "quality_report": True, "recovery": True}
    chat = Chat(_engine(wanted), customer(order("o1", "WH-1", paid=at(days=-20), delivered=at(days=-15),
                                                batch="B24", region="浙江")))
    acts = chat.customer(analysis("热水器有点问题", Intent.product_defect, skus=["WH-1"]))
    assert {"escalate", "care", "clarify", "quality_report", "recovery"} <= set(types(acts))
    qr = of_type(acts, "quality_report")[0]
    assert qr.details["sku"] == "WH-1" and qr.details["batch"] == "B24"  # the report still carries its tags
    rec = of_type(acts, "recovery")[0]
    assert rec.details["case"] == "defect" and rec.details["tier"] == "normal"  # within the tier's allowance


def test_cross_sell_is_never_added_where_the_gate_is_closed() -> None:
    chat = Chat(_engine({"cross_sell": True}), customer(order("o1", "DP-M", paid=at(days=-3))))
    acts = chat.customer(analysis("纸尿裤漏了 垃圾", Intent.product_defect, sentiment="negative", skus=["DP-M"]))
    assert not of_type(acts, "cross_sell")


def test_the_model_file_round_trips_and_a_wrong_length_is_refused(tmp_path: Path) -> None:
    m = _model({"answer": True}, N)
    m.save(tmp_path / "actions.json")
    back = ActionModel.load(tmp_path / "actions.json")
    assert back.probabilities([0.0] * N)["answer"] > 0.99
    with pytest.raises(ModelError):
        back.probabilities([0.0] * (N - 1))


def _veto_engine(veto: float, wanted: bool, enabled: bool = True) -> Engine:
    shop = make_shop({"cross_sell": {"model_veto": enabled}})
    m = _model({"cross_sell": wanted, "answer": True}, N)
    m = ActionModel(m.weights, m.bias, {**m.thresholds, "cross_sell": None}, {}, {"cross_sell": veto})
    return Engine(Policy(shop, load_policy_config(None, shop.policy), m))


def _diaper_thanks(engine: Engine) -> list[object]:
    chat = Chat(engine, customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("宝宝红屁屁了，纸尿裤要换码吗", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    chat.agent("亲，12斤建议穿M码")
    return chat.customer(analysis("好的谢谢 解决了", Intent.greeting_thanks, 0.95, sentiment="positive"))


def test_the_cross_sell_veto_withholds_only_what_the_gate_allowed() -> None:
    assert of_type(_diaper_thanks(_veto_engine(0.5, wanted=True)), "cross_sell")  # over the veto: shown
    assert not of_type(_diaper_thanks(_veto_engine(0.5, wanted=False)), "cross_sell")  # under it: withheld
    # the shop's policy decides whether the veto applies at all (off by default)
    assert of_type(_diaper_thanks(_veto_engine(0.5, wanted=False, enabled=False)), "cross_sell")


def test_the_proposed_flag_sits_where_the_veto_training_reads_it() -> None:
    from assist.policy.learned import proposed_index

    shop = make_shop()
    engine = Engine(Policy(shop, load_policy_config(None, shop.policy)), trace=True)
    chat = Chat(engine, customer(order("o1", "DP-M", paid=at(days=-3))))
    chat.customer(analysis("宝宝红屁屁了，纸尿裤要换码吗", Intent.presale_product, 0.9, hits=[("dp-size", 0.8)]))
    chat.agent("亲，12斤建议穿M码")
    thanks = analysis("好的谢谢 解决了", Intent.greeting_thanks, 0.95, sentiment="positive")
    step = engine.customer_turn(chat.state, turn_id="t9", text=thanks.text, ts=at(), analysis=thanks)
    assert of_type(step.actions, "cross_sell") and step.features is not None
    assert step.features[proposed_index("cross_sell")] == 1.0 and step.features[proposed_index("clarify")] == 0.0


def test_adding_has_its_own_threshold() -> None:
    # keeps what the rules proposed (p 0.998 over 0.5) but may add only over 0.999: nothing is added
    shop = make_shop()
    wanted = {t: True for t in TYPES}
    m = _model(wanted, N)
    m = ActionModel(m.weights, m.bias, m.thresholds, {}, {}, dict.fromkeys(TYPES, 0.999))
    chat = Chat(Engine(Policy(shop, load_policy_config(None, shop.policy), m)), customer())
    acts = chat.customer(analysis("耳机声音小", Intent.usage_howto, hits=[("ep-volume-low", 0.9)]))
    assert types(acts) == ["answer"]
