"""The policy's choices are data: defaults load and validate, a shop's policy.yaml overrides or
extends them, and bad data is reported with the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from policy_build import T0, make_policy

from assist.errors import DataFileError
from assist.policy import Policy, load_policy_config, merge_policy
from assist.policy.quality import check_text
from assist.shop import load_shop
from assist.state import new_state
from assist.types import Intent


def test_defaults_load_and_cover_every_judgment() -> None:
    cfg = load_policy_config()
    assert cfg.recovery.unshipped_after_hours == 24
    assert {"normal", "vip"} <= set(cfg.recovery.allowances)
    assert {"forbidden_promise", "superlative", "rude"} <= set(cfg.qa.checks)
    # threat words live in the cue file only; the policy names the cue rules that are threats
    assert cfg.signals.threat_cues == ["threat", "complain_statement"] and not cfg.signals.threat.match
    assert cfg.family_of(Intent.usage_howto) == "product" and cfg.family_of(Intent.greeting_thanks) is None
    assert set(cfg.rank.priority) == {"escalate", "qa_alert", "recovery", "quality_report", "answer", "clarify",
                                      "care", "cross_sell"}


def test_merge_replaces_scalars_and_lists_and_plus_extends() -> None:
    base = {"a": {"x": 1, "words": ["甲", "乙"]}, "b": [1]}
    assert merge_policy(base, {"a": {"x": 2}}) == {"a": {"x": 2, "words": ["甲", "乙"]}, "b": [1]}
    assert merge_policy(base, {"a": {"words": ["丙"]}})["a"]["words"] == ["丙"]
    assert merge_policy(base, {"a": {"words+": ["丙", "甲"]}})["a"]["words"] == ["甲", "乙", "丙"]
    assert base == {"a": {"x": 1, "words": ["甲", "乙"]}, "b": [1]}  # not mutated


def test_shop_override_is_validated_with_file_and_field() -> None:
    with pytest.raises(DataFileError) as exc:
        load_policy_config(None, {"escalation": {"repeat_turn": 2}}, shop_file="shop/policy.yaml")
    problem = exc.value.problems[0]
    assert problem.file == "shop/policy.yaml" and problem.field == "escalation.repeat_turn"
    with pytest.raises(DataFileError) as exc:
        load_policy_config(None, {"signals": {"threat": {"match+": ["(unclosed"]}}})
    assert "bad regex" in exc.value.problems[0].message
    with pytest.raises(DataFileError):
        load_policy_config(None, {"timezone": "Mars/Olympus"})


def test_shop_directory_policy_yaml_changes_behaviour(tmp_path: Path) -> None:
    # A shop the project has never seen, with its own policy file.
    (tmp_path / "kb.jsonl").write_text(
        '{"id": "pet-1", "question": "猫粮怎么换粮？", "answer": "七天换粮法。", "skus": ["CAT-1"], '
        '"intent": "usage_howto"}\n', encoding="utf-8")
    (tmp_path / "catalog.jsonl").write_text(
        '{"sku": "CAT-1", "name": "猫粮 2kg", "category": "宠物/猫粮", "price": 89, "stock": 9, "consumable": true}\n',
        encoding="utf-8")
    (tmp_path / "cross_sell.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
        "recovery": {"unshipped_after_hours": 6, "allowances": {"normal": {"unshipped": {"coupon_yuan": 3}}}},
        "qa": {"checks": {"superlative": {"match+": ["猫界爱马仕"]}}},
    }, allow_unicode=True), encoding="utf-8")
    policy = Policy.from_shop(load_shop(tmp_path))
    assert policy.config.recovery.unshipped_after_hours == 6
    assert policy.config.recovery.allowance("normal", "unshipped")[1].coupon_yuan == 3
    alerts = policy.check_agent_turn(new_state("c"), "这款是猫界爱马仕", T0)
    assert [a.details["code"] for a in alerts] == ["superlative"]


def test_every_default_script_passes_the_agent_checks() -> None:
    """A script we suggest must never be flagged when the agent sends it as is."""
    cfg = load_policy_config()
    for name in cfg.scripts:
        if name.startswith("qa_"):
            continue  # hints to the agent, not messages to the customer
        text = cfg.script(name, order_id="o1", name="商品", hours="30", extras="", remedy="换新", question="问题",
                          status_text="已发货", sku="S1", batch="B1", region="杭州", symptom="不热", tip="小贴士",
                          gift="小礼品", coupon_yuan="5", detail="中转延误")
        codes = [a.details["code"] for a in check_text(cfg, text, T0)]
        assert codes == [], (name, text, codes)
    for rule in cfg.care.seasonal:
        assert [a.details["code"] for a in check_text(cfg, rule.script, T0)] == [], rule.id


def test_policy_is_built_from_config_not_constants() -> None:
    # The same turn, two configurations, two behaviours.
    assert make_policy().config.escalation.repeat_turns == 3
    assert make_policy({"escalation": {"repeat_turns": 5}}).config.escalation.repeat_turns == 5


def test_exported_members() -> None:
    import assist.policy as policy_pkg

    assert sorted(policy_pkg.__all__) == sorted(
        ["Action", "ActionType", "Policy", "PolicyConfig", "Proposal", "load_policy_config", "merge_policy"])
    assert all(hasattr(policy_pkg, name) for name in policy_pkg.__all__)
