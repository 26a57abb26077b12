"""`assist replay` end to end: report files, progress on stderr, --compare deltas, --floors exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_build import DEMO_LOGS, check_report_in_browser

from assist.cli import main

pytestmark = pytest.mark.usefixtures("reuse_runtime")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_writes_reports_and_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "r"), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["floors"] is None
    for name in ("report.json", "report.html", "turns.jsonl"):
        assert (tmp_path / "r" / name).exists()
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert report["summary"] == data["summary"] and report["input"]["conversations"] == 4
    assert "replay" in err and "4/4" in err          # the tqdm bar went to stderr


def test_compare_prints_deltas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "old"), "--json")
    assert code == 0
    old = tmp_path / "old" / "report.json"
    # Make the old run look better on one metric, so the new run shows a regression.
    data = json.loads(old.read_text(encoding="utf-8"))
    data["summary"]["intent.accuracy"] = (data["summary"]["intent.accuracy"] or 0) + 0.2
    old.write_text(json.dumps(data), encoding="utf-8")
    code, out, _ = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "new"), "--compare", str(old))
    assert code == 0                                  # compare reports; floors decide the exit code
    assert f"compared with {old}" in out and "intent.accuracy" in out and "▼ WORSE" in out
    # Without logs: compare the existing --out report with the old one, no replay.
    code, out, _ = _run(capsys, "--out", str(tmp_path / "new"), "--compare", str(old), "--json")
    assert code == 0 and "intent.accuracy" in json.loads(out)["regressions"]


def test_floors_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("version: 1\nmin:\n  intent.n: 1\nmax:\n  latency.total.p50: 0.00001\n", encoding="utf-8")
    code, out, _ = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "r"), "--floors", str(impossible))
    assert code == 1 and "FAIL latency.total.p50" in out and "floor(s) not met" in out

    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("min:\n  intent.n: 1\n", encoding="utf-8")
    code, out, _ = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "r"), "--floors", str(lenient), "--json")
    data = json.loads(out)
    # cross_sell.violations <= 0 is always checked: the exit code follows it.
    violations = data["summary"]["cross_sell.violations"]
    assert code == (1 if violations else 0) and data["ok"] is (violations == 0)
    assert [f["key"] for f in data["floors"]] == ["cross_sell.violations", "intent.n"]


def test_bad_floors_file_fails_before_replaying(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "f.yaml"
    bad.write_text("min:\n  intent.acuracy: 0.8\n", encoding="utf-8")
    code, _, err = _run(capsys, str(DEMO_LOGS), "--out", str(tmp_path / "r"), "--floors", str(bad))
    assert code == 2 and "intent.acuracy" in err and not (tmp_path / "r").exists()


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs.jsonl"
    lines = DEMO_LOGS.read_text(encoding="utf-8").splitlines()
    logs.write_text("\n".join([lines[0], "{oops", lines[1]]) + "\n", encoding="utf-8")
    code, _out, err = _run(capsys, str(logs), "--out", str(tmp_path / "r"), "--json")
    assert code == 0
    assert f"skipped {logs}:2: <json>" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert report["input"]["skipped_lines"] == 1 and report["input"]["conversations"] == 2

    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("{oops\n", encoding="utf-8")
    code, _, err = _run(capsys, str(only_bad), "--out", str(tmp_path / "r2"))
    assert code == 2 and "no valid conversation" in err


def test_missing_logs_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys)
    assert code == 2 and "give the logs" in err


@pytest.mark.browser
def test_real_report_renders_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DEMO_LOGS), "--out", str(tmp_path), "--json"]) in (0, 1)
    capsys.readouterr()
    seen = check_report_in_browser(tmp_path / "report.html")
    for chart, info in seen["charts"].items():  # type: ignore[union-attr]
        assert info["marks"] > 0 and info["width"] > 100, f"{chart}: {info}"
    assert seen["errors"] == [] and all(u.startswith("file://") for u in seen["requests"])  # type: ignore[union-attr]
