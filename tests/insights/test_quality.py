"""The quality alert test (assist.insights.quality): pure, on hand-built groups."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import binom, poisson

from assist.insights.quality import (
    AlertRule,
    DefectPoint,
    GroupKey,
    GroupStats,
    Verdict,
    assess,
    baseline,
    binom_sf,
    judge,
    p_value,
    poisson_sf,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEY = GroupKey("SJ-EP-001", "B2411", "kb:sj-earbuds-volume-low")


def _stats(conversations: list[str], history: int = 0, observed_days: float = 0.0,
           regions: list[str | None] | None = None) -> GroupStats:
    regions = regions or [None] * len(conversations)
    window = [DefectPoint(c, r, T0 + timedelta(hours=i), f"t{i}") for i, (c, r) in
              enumerate(zip(conversations, regions, strict=True))]
    return GroupStats(KEY, window, history, observed_days)


@pytest.mark.parametrize("k, lam", [(0, 1.0), (1, 0.2), (3, 0.2), (7, 2.0), (2, 5.0), (40, 1.5), (120, 100.0)])
def test_poisson_tail_matches_scipy(k: int, lam: float) -> None:
    want = float(poisson.sf(k - 1, lam))
    assert math.isclose(poisson_sf(k, lam), want, rel_tol=1e-9, abs_tol=1e-300)


@pytest.mark.parametrize("k, n, q", [(0, 3, 0.5), (3, 3, 0.1346), (5, 18, 0.1346), (1, 40, 0.01), (4, 3, 0.5)])
def test_binomial_tail_matches_scipy(k: int, n: int, q: float) -> None:
    assert math.isclose(binom_sf(k, n, q), float(binom.sf(k - 1, n, q)), rel_tol=1e-9, abs_tol=1e-300)


def test_without_history_three_reports_in_the_window_raise_and_two_do_not() -> None:
    rule = AlertRule()
    verdict, a = judge(rule, _stats(["c1", "c2", "c3"]), is_open=False)
    assert verdict is Verdict.raise_ and a.count == 3 and a.baseline == 0.2
    assert a.p_value == pytest.approx(0.001148, rel=1e-3)
    assert judge(rule, _stats(["c1", "c2"]), is_open=False)[0] is Verdict.none


def test_one_conversation_counts_once() -> None:
    assert assess(AlertRule(), _stats(["c1", "c1", "c1"])).count == 1


def test_history_raises_the_bar() -> None:
    rule = AlertRule()
    # 9 defects of the SKU in 90 observed days: 1.4 expected in 14 days; 3 is ordinary, 7 is not.
    assert baseline(rule, _stats([], history=9, observed_days=90)) == pytest.approx(1.4)
    assert judge(rule, _stats([f"c{i}" for i in range(3)], 9, 90), is_open=False)[0] is Verdict.none
    assert judge(rule, _stats([f"c{i}" for i in range(7)], 9, 90), is_open=False)[0] is Verdict.raise_


def test_the_rate_comparison_guards_against_a_baseline_from_few_defects() -> None:
    rule = AlertRule()
    # 6 in the window against 9 in 90 days: rare under Poisson(1.4) (p = 0.0032), but with the
    # baseline itself estimated from 9 defects the exact conditional test says p = 0.0100.
    stats = _stats([f"c{i}" for i in range(6)], 9, 90)
    assert poisson_sf(6, 1.4) < rule.alpha
    want = float(binom.sf(5, 15, 14 / 104))
    assert p_value(rule, stats, 6) == pytest.approx(want, rel=1e-9) and want > rule.alpha
    assert judge(rule, stats, is_open=False)[0] is Verdict.none


def test_history_shorter_than_a_window_is_no_history() -> None:
    rule = AlertRule()
    assert baseline(rule, _stats([], history=5, observed_days=3)) == rule.baseline_floor
    # a young store: the rate is over the days it has, not over the whole history period
    assert baseline(rule, _stats([], history=3, observed_days=30)) == pytest.approx(1.4)


def test_open_alert_closes_when_the_group_subsides_with_hysteresis() -> None:
    rule = AlertRule()
    assert judge(rule, _stats(["c1", "c2", "c3"]), is_open=True)[0] is Verdict.update
    assert judge(rule, _stats(["c1", "c2"]), is_open=True)[0] is Verdict.close
    # between alpha and close_alpha: not enough to raise, not low enough to close
    five = _stats([f"c{i}" for i in range(5)], 9, 90)
    assert rule.alpha < p_value(rule, five, 5) < rule.close_alpha
    assert judge(rule, five, is_open=False)[0] is Verdict.none
    assert judge(rule, five, is_open=True)[0] is Verdict.update


def test_region_is_a_breakdown() -> None:
    a = assess(AlertRule(), _stats(["c1", "c2", "c3"], regions=["浙江杭州", "上海", "浙江杭州"]))
    assert a.region == "浙江杭州" and a.regions == {"上海": 1, "浙江杭州": 2}
    assert a.conversation_ids == ("c1", "c2", "c3") and a.symptom_text == "t2"


def test_rule_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        AlertRule(alpha=0.1, close_alpha=0.05)
    with pytest.raises(ValueError):
        AlertRule(min_count=0)
