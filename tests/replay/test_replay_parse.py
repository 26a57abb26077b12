"""Parsing logged conversations: every malformed line reported with its line number, then skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assist.errors import ReplayInputError
from assist.replay.parse import GOLD_ACTIONS, QA_FLAGS, parse_logs, read_logs


def _conv(cid: str = "c1", **over: object) -> str:
    d: dict[str, object] = {
        "conversation_id": cid,
        "customer": {"id": "u1", "tier": "vip", "opt_out_marketing": False,
                     "orders": [{"order_id": "o1", "sku": "MB-DP-003", "status": "delivered",
                                 "paid_at": "2026-11-20T10:00:00+08:00"}]},
        "turns": [
            {"turn_id": "t1", "role": "customer", "text": "宝宝红屁屁怎么办", "ts": "2026-11-24T20:01:00+08:00",
             "gold": {"intent": "usage_howto", "sentiment": "neutral", "kb_ids": ["kb-1"], "actions": ["answer"],
                      "cross_sell_ok": False}},
            {"turn_id": "t2", "role": "agent", "text": "亲，勤换尿布哦", "ts": "2026-11-24T20:02:00+08:00",
             "gold": {"qa": []}},
        ],
    }
    d.update(over)
    return json.dumps(d, ensure_ascii=False)


def test_valid_line_parses_with_gold() -> None:
    parsed = parse_logs(_conv())
    assert parsed.problems == [] and parsed.warnings == []
    (pc,) = parsed.conversations
    assert pc.line == 1
    c = pc.conversation
    assert c.customer is not None and c.customer.tier == "vip" and c.customer.orders[0].sku == "MB-DP-003"
    assert c.turns[0].gold is not None and c.turns[0].gold.actions == ["answer"]
    assert c.turns[1].gold is not None and c.turns[1].gold.qa == []


def test_malformed_lines_are_reported_with_line_numbers_and_skipped() -> None:
    bad_turn = json.loads(_conv("c3"))
    bad_turn["turns"][0]["role"] = "bot"
    lines = [
        _conv("c1"),                                       # 1 ok
        "{not json",                                       # 2 bad JSON
        "",                                                # 3 blank: ignored
        json.dumps(bad_turn),                              # 4 bad role
        "[1, 2]",                                          # 5 not an object
        _conv("c5", turns=[]),                             # 6 no turns
        _conv("c1"),                                       # 7 duplicate conversation id
        _conv("c8"),                                       # 8 ok
    ]
    parsed = parse_logs("\n".join(lines), name="logs.jsonl")
    assert [c.conversation.conversation_id for c in parsed.conversations] == ["c1", "c8"]
    assert [c.line for c in parsed.conversations] == [1, 8]
    by_line = {p.line: p for p in parsed.problems}
    assert sorted(by_line) == [2, 4, 5, 6, 7]
    assert by_line[2].field == "<json>"
    assert by_line[4].field == "turns.0.role"
    assert by_line[6].field == "turns"
    assert "first on line 1" in by_line[7].message
    assert all(p.file == "logs.jsonl" for p in parsed.problems)
    assert parsed.skipped_lines == 5


@pytest.mark.parametrize(("gold", "field"), [
    ({"intent": "shipping"}, "turns.0.gold.intent"),
    ({"sentiment": "angry"}, "turns.0.gold.sentiment"),
    ({"actions": ["answer", "upsell"]}, "turns.0.gold.actions"),
    ({"intnet": "refund"}, "turns.0.gold.intnet"),          # a typo is an error, not an unscored turn
    ({"cross_sell_ok": "maybe"}, "turns.0.gold.cross_sell_ok"),
    ({"qa": ["rude"]}, "turns.0"),                           # qa belongs to agent turns
])
def test_bad_gold_names_the_field(gold: dict[str, object], field: str) -> None:
    line = json.loads(_conv())
    line["turns"][0]["gold"] = gold
    parsed = parse_logs(json.dumps(line))
    assert not parsed.conversations
    assert parsed.problems[0].line == 1 and parsed.problems[0].field == field


def test_agent_turn_gold_takes_qa_only() -> None:
    line = json.loads(_conv())
    line["turns"][1]["gold"] = {"intent": "refund"}
    assert parse_logs(json.dumps(line)).problems[0].field == "turns.1"
    line["turns"][1]["gold"] = {"qa": ["forbidden_promise", "no_such_flag"]}
    assert parse_logs(json.dumps(line)).problems[0].field == "turns.1.gold.qa"


def test_duplicate_turn_id_and_bad_customer_are_line_problems() -> None:
    line = json.loads(_conv())
    line["turns"][1]["turn_id"] = "t1"
    p = parse_logs(json.dumps(line)).problems[0]
    assert (p.line, p.field) == (1, "turns.1.turn_id")
    line = json.loads(_conv())
    line["customer"]["orders"][0]["status"] = "lost"
    p = parse_logs(json.dumps(line)).problems[0]
    assert p.field == "customer.orders.0.status"


def test_backwards_timestamp_is_a_warning_not_a_skip() -> None:
    line = json.loads(_conv())
    line["turns"][1]["ts"] = "2026-11-24T19:00:00+08:00"
    parsed = parse_logs(json.dumps(line))
    assert len(parsed.conversations) == 1
    assert parsed.warnings[0].field == "turns.1.ts"


def test_bytes_upload_with_bom_and_a_non_utf8_line(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + _conv("a").encode() + b"\n" + b"\xff\xfe bad\n" + _conv("b").encode() + b"\n"
    parsed = parse_logs(data)
    assert [c.conversation.conversation_id for c in parsed.conversations] == ["a", "b"]
    assert [(p.line, p.field) for p in parsed.problems] == [(2, "<encoding>")]
    f = tmp_path / "logs.jsonl"
    f.write_bytes(data)
    from_file = read_logs(f)
    assert len(from_file.conversations) == 2 and from_file.problems[0].line == 2


def test_missing_file_is_a_replay_input_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError):
        read_logs(tmp_path / "nope.jsonl")


def test_gold_vocabularies_match_the_policy_and_design() -> None:
    from assist.policy.actions import ActionType

    assert set(GOLD_ACTIONS) == {a.value for a in ActionType} - {"qa_alert"}
    assert "forbidden_promise" in QA_FLAGS and "personal_data" in QA_FLAGS
