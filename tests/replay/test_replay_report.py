"""report.json keys are stable and versioned; report.html is one self-contained, escaped page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from replay_build import aturn, conv, cturn, sample

from assist.replay import metrics as m
from assist.replay.parse import parse_logs
from assist.replay.report import FORMAT, FORMAT_VERSION, REPORT_KEYS, build_report, render_html, write_report

# Frozen on purpose: changing these is a contract change (bump FORMAT_VERSION and say so).
EXPECTED_TOP_KEYS = {
    "format", "format_version", "generated_at", "assist_version", "input", "shop", "config", "summary",
    "metrics", "latency_histogram", "conversations", "worst_conversations", "errors",
}
EXPECTED_SUMMARY_SAMPLE = {
    "input.conversations", "intent.accuracy", "intent.macro_f1", "sentiment.accuracy", "sentiment.macro_f1",
    "kb.recall_at_1", "kb.recall_at_5", "kb.mrr", "actions.precision", "actions.recall",
    "actions.cross_sell.precision", "cross_sell.violations", "cross_sell.missed", "qa.precision", "qa.recall",
    "qa.forbidden_promise.recall", "latency.total.p50", "latency.total.p95", "latency.total.p99",
    "latency.embed.p95", "latency.policy.p99",
}


def _report(convs=None, logs: str = "") -> dict:
    return build_report(convs if convs is not None else sample(), parse_logs(logs), shop={"dir": "shop"})


def test_report_keys_are_stable_and_versioned() -> None:
    r = _report()
    assert set(r) == EXPECTED_TOP_KEYS == set(REPORT_KEYS)
    assert r["format"] == FORMAT and r["format_version"] == FORMAT_VERSION == 1
    assert EXPECTED_SUMMARY_SAMPLE <= set(r["summary"])
    assert list(r["summary"]) == m.summary_keys()
    # The same key set whatever the data: a report without any gold has every key too (null values).
    bare = _report([conv("c", cturn("c", "t1"), aturn("c", "t2"))])
    assert set(bare) == set(r) and list(bare["summary"]) == list(r["summary"])
    assert set(bare["metrics"]) == set(r["metrics"])
    json.dumps(r)  # JSON-ready as is


def test_report_records_input_problems_and_worst_conversations() -> None:
    r = _report(logs='{"conversation_id": "x"\n')
    assert r["input"]["skipped_lines"] == 1 and r["input"]["problems"][0]["line"] == 1
    assert r["summary"]["input.skipped_lines"] == 1
    assert r["worst_conversations"][0] == "c1"       # min sentiment -0.8
    c1 = next(c for c in r["conversations"] if c["conversation_id"] == "c1")
    assert [p["turn_id"] for p in c1["sentiment"]] == ["t1", "t3"] and c1["errors"] >= 3


def test_write_report_files(tmp_path: Path) -> None:
    paths = write_report(_report(), tmp_path / "out", sample())
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["format"] == FORMAT
    turns = [json.loads(x) for x in paths["turns"].read_text(encoding="utf-8").splitlines()]
    assert len(turns) == 7 and turns[0]["gold"]["intent"] == "logistics"


def test_html_is_self_contained_and_has_every_chart() -> None:
    page = render_html(_report())
    assert page.startswith("<!doctype html>")
    # Nothing to fetch: no URL scheme, no src/href to a file, no @import or url().
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I)
    assert not re.search(r"""\b(src|href)\s*=\s*["'](?!#)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    for chart in ("intent-confusion", "intent-f1", "sentiment-trend", "sentiment-confusion", "action-recall",
                  "latency-histogram"):
        assert f'data-chart="{chart}"' in page
    assert page.count("<tr data-kind=") == len(m.errors(sample()))


def test_html_escapes_log_text() -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    convs = [conv('c"<b>', cturn('c"<b>', "t1", gold={"intent": "refund"}, intent="logistics", text=evil))]
    page = render_html(_report(convs))
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1            # only the page's own filter script


def test_html_without_gold_still_renders_placeholders() -> None:
    page = render_html(_report([conv("c", cturn("c", "t1"))]))
    assert "no gold labels to score" in page and 'data-chart="intent-confusion"' in page
