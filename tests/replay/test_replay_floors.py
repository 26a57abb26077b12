"""--floors: a metric below its floor, or any policy violation, fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from assist.errors import ReplayInputError
from assist.replay.floors import check_floors, failed, load_floors, parse_floors


def test_floors_pass_and_fail() -> None:
    floors = parse_floors({"version": 1, "min": {"intent.accuracy": 0.8, "kb.recall_at_5": 0.9},
                           "max": {"latency.total.p95": 100}})
    summary = {"intent.accuracy": 0.85, "kb.recall_at_5": 0.7, "latency.total.p95": 120.0,
               "cross_sell.violations": 0}
    bad = {c.key for c in failed(check_floors(summary, floors))}
    assert bad == {"kb.recall_at_5", "latency.total.p95"}


def test_policy_violations_always_fail() -> None:
    checks = check_floors({"cross_sell.violations": 1}, {"min": {}, "max": {}})
    assert [c.key for c in failed(checks)] == ["cross_sell.violations"]
    # A file cannot loosen it.
    checks = check_floors({"cross_sell.violations": 1}, parse_floors({"max": {"cross_sell.violations": 5}}))
    assert failed(checks)


def test_unmeasured_metric_fails_its_floor() -> None:
    (c,) = failed(check_floors({"cross_sell.violations": 0, "qa.recall": None}, parse_floors({"min": {"qa.recall": 0.5}})))
    assert c.key == "qa.recall" and "not measured" in str(c)


@pytest.mark.parametrize("raw", [
    {"min": {"intent.acurracy": 0.8}},          # typo: unknown metric
    {"min": {"intent.accuracy": "high"}},
    {"floor": {}},
    {"version": 2},
    ["intent.accuracy"],
])
def test_bad_floors_files_are_input_errors(raw: object) -> None:
    with pytest.raises(ReplayInputError):
        parse_floors(raw)


def test_project_floors_file_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "eval" / "floors.yaml"
    if not path.exists():
        pytest.skip("eval/floors.yaml not written yet")
    floors = load_floors(path)
    assert floors["min"], "floors.yaml sets no floor"
