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
