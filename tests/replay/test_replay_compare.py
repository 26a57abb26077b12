"""--compare: metric deltas between two reports, regressions called out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_build import sample

from assist.errors import ReplayInputError
from assist.replay import compare as cmp
from assist.replay.parse import parse_logs
from assist.replay.report import build_report


def test_deltas_and_verdicts() -> None:
    old = {"intent.accuracy": 0.80, "kb.mrr": 0.70, "latency.total.p95": 40.0, "latency.total.p50": 10.0,
           "cross_sell.violations": 0, "intent.n": 50, "qa.recall": None, "actions.recall": 0.5}
    new = {"intent.accuracy": 0.75, "kb.mrr": 0.7004, "latency.total.p95": 60.0, "latency.total.p50": 10.5,
           "cross_sell.violations": 1, "intent.n": 55, "qa.recall": 0.9, "actions.recall": 0.6}
    d = {x.key: x for x in cmp.compare(old, new)}
    assert d["intent.accuracy"].verdict == "worse" and d["intent.accuracy"].delta == pytest.approx(-0.05)
    assert d["kb.mrr"].verdict == "same"                      # within 0.001
    assert d["latency.total.p95"].verdict == "worse"          # +50 %
    assert d["latency.total.p50"].verdict == "same"           # +0.5 ms is noise
    assert d["cross_sell.violations"].verdict == "worse"      # every violation counts
    assert d["intent.n"].verdict == "info"                    # data size is not quality
    assert d["qa.recall"].verdict == "new"
    assert d["actions.recall"].verdict == "better"
    assert {x.key for x in cmp.regressions(list(d.values()))} == {
        "intent.accuracy", "latency.total.p95", "cross_sell.violations"}
    text = cmp.render(list(d.values()))
    assert "▼ WORSE" in text and "intent.accuracy" in text and "kb.mrr" not in text
    assert "3 regression(s)" in text


def test_load_report_refuses_other_files(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ReplayInputError, match="not an assist replay report"):
        cmp.load_report(p)
    report = build_report(sample(), parse_logs(""))
    report["format_version"] = 99
    p.write_text(json.dumps(report))
    with pytest.raises(ReplayInputError, match="newer"):
        cmp.load_report(p)
    with pytest.raises(ReplayInputError, match="not found"):
        cmp.load_report(tmp_path / "missing.json")


def test_same_report_has_no_change(tmp_path: Path) -> None:
    report = build_report(sample(), parse_logs(""))
    p = tmp_path / "r.json"
    p.write_text(json.dumps(report))
    loaded = cmp.load_report(p)
    deltas = cmp.compare(loaded["summary"], report["summary"])
    assert not cmp.regressions(deltas)
    assert cmp.render(deltas) == "no metric changed"
