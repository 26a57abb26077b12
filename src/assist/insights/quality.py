"""Quality early warning, the statistics (DESIGN §1 "Individual or systemic?"): pure, no I/O, no clock.

Confirmed defects (:mod:`assist.insights.defects`) are grouped by **(sku, batch, symptom)**: a bad
batch shows up as one SKU, one batch and one failure mode; region is a breakdown of the group
(``regions``), not a key, because a batch ships everywhere and splitting by region would only
divide the count that has to reach significance.

**The test** (one-sided, two conditions). ``k`` = conversations of the group with a counted defect
in the window ``W`` (default the last 14 days); ``h`` = defects of the same (sku, symptom), all
batches, in the history period before the window, of which ``H`` days were actually observed
(at most ``history_days``, 90).

1. *Poisson against the baseline*: ``p₁ = P(X ≥ k)`` for ``X ~ Poisson(λ)``, with
   ``λ = max(h / H × W, baseline_floor)`` (the baseline: expected defects in a window).
2. *Exact comparison of the two rates* (the conditional test for Poisson rates, Przyborowski and
   Wilenski): if window and history have the same rate, ``k | k + h ~ Binomial(k + h, W / (W + H))``;
   ``p₂ = P(K ≥ k)``. It accounts for the baseline being estimated from a handful of defects,
   which the plug-in ``λ`` of (1) ignores: on noise with a 90-day history, (1) alone raised
   several times the nominal rate of false alerts.

``p = max(p₁, p₂)``; an alert is **raised** when ``k ≥ min_count`` and ``p < alpha`` (default 3
and 0.01). With less than one window of observed history only (1) applies and ``λ`` is the floor
(0.2 per window), so 3 reports in 14 days raise an alert (p = 0.0011) and 2 do not. The baseline
is the SKU's rate across *all* its batches, so for one batch it is an over-estimate (conservative,
while a bad batch still stands out because its defects concentrate in one group). An open alert is
**closed** when the group subsides: ``k < min_count`` or ``p ≥ close_alpha`` (0.05); the gap
between ``alpha`` and ``close_alpha`` keeps an alert from flapping around the threshold. One alert
per group is open at a time (:func:`judge`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple


class GroupKey(NamedTuple):
    """What a quality alert is about: one failure mode of one batch of one SKU (batch may be unknown)."""

    sku: str
    batch: str | None
    symptom: str


@dataclass(frozen=True)
class AlertRule:
    """The test's parameters (``ASSIST_QUALITY_*`` settings); see the module docstring."""

    window_days: float = 14.0
    history_days: float = 90.0
    min_count: int = 3
    alpha: float = 0.01
    close_alpha: float = 0.05
    baseline_floor: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= self.close_alpha < 1):
            raise ValueError("need 0 < alpha <= close_alpha < 1")
        if self.window_days <= 0 or self.history_days <= 0 or self.baseline_floor <= 0 or self.min_count < 1:
            raise ValueError("window_days, history_days and baseline_floor must be > 0, min_count >= 1")

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @property
    def history(self) -> timedelta:
        return timedelta(days=self.history_days)


@dataclass(frozen=True)
class DefectPoint:
    """One counted defect of a group inside the window."""

    conversation_id: str
    region: str | None
    at: datetime
    symptom_text: str = ""


@dataclass(frozen=True)
class GroupStats:
    """What :func:`judge` needs about a group at ``now``, read from the store."""

    key: GroupKey
    window: Sequence[DefectPoint]
    history_count: int  # defects of (sku, symptom), all batches, in the history period before the window
    history_observed_days: float  # how much of the history period the store actually covers


@dataclass(frozen=True)
class Assessment:
    count: int
    baseline: float
    p_value: float
    significant: bool
    subsided: bool
    conversation_ids: tuple[str, ...]
    region: str | None
    regions: dict[str, int]
    symptom_text: str


class Verdict(StrEnum):
    raise_ = "raise"
    update = "update"  # an open alert stays open with new figures
    close = "close"
    none = "none"


def poisson_sf(k: int, lam: float) -> float:
    """``P(X >= k)`` for ``X ~ Poisson(lam)``, accurate in the far tail (where alerts live)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0

    def log_pmf(i: int) -> float:
        return -lam + i * math.log(lam) - math.lgamma(i + 1)

    if k > lam:  # sum the upper tail directly: 1 - cdf would cancel to 0 for tiny p
        terms, i = [], k
        while True:
            t = math.exp(log_pmf(i))
            terms.append(t)
            if t < 1e-18 * math.fsum(terms) or i > k + 10_000:
                break
            i += 1
        return min(1.0, math.fsum(terms))
    return max(0.0, 1.0 - math.fsum(math.exp(log_pmf(i)) for i in range(k)))


def binom_sf(k: int, n: int, q: float) -> float:
    """``P(K >= k)`` for ``K ~ Binomial(n, q)``, summed exactly (n is a count of defects: small)."""
    if k <= 0:
        return 1.0
    if k > n or q <= 0:
        return 0.0
    if q >= 1:
        return 1.0
    lq, lr = math.log(q), math.log1p(-q)
    return min(1.0, math.fsum(
        math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lq + (n - i) * lr)
        for i in range(k, n + 1)))


def _observed_days(rule: AlertRule, stats: GroupStats) -> float:
    # Less than one window of observed history is no history: a rate from a few days is noise.
    days = min(stats.history_observed_days, rule.history_days)
    return days if days >= rule.window_days else 0.0


def p_value(rule: AlertRule, stats: GroupStats, k: int) -> float:
    """The larger of the two one-sided p-values of the module docstring."""
    p = poisson_sf(k, baseline(rule, stats))
    days = _observed_days(rule, stats)
    if days > 0:
        p = max(p, binom_sf(k, k + stats.history_count, rule.window_days / (rule.window_days + days)))
    return p


def baseline(rule: AlertRule, stats: GroupStats) -> float:
    """Expected defects of the group in one window when nothing is wrong (see the module docstring)."""
    days = _observed_days(rule, stats)
    rate = stats.history_count / days if days > 0 else 0.0
    return max(rate * rule.window_days, rule.baseline_floor)


def assess(rule: AlertRule, stats: GroupStats) -> Assessment:
    """The group's figures: window count (distinct conversations), baseline, p-value, regions."""
    latest: dict[str, DefectPoint] = {}
    for d in sorted(stats.window, key=lambda d: d.at):
        latest[d.conversation_id] = d
    k = len(latest)
    lam = baseline(rule, stats)
    p = p_value(rule, stats, k)
    regions = Counter(d.region for d in latest.values() if d.region)
    # the modal region; ties go to the alphabetically first, so the answer is stable
    region = min(regions, key=lambda r: (-regions[r], r)) if regions else None
    newest = max(latest.values(), key=lambda d: d.at, default=None)
    return Assessment(
        count=k, baseline=round(lam, 6), p_value=p,
        significant=k >= rule.min_count and p < rule.alpha,
        subsided=k < rule.min_count or p >= rule.close_alpha,
        conversation_ids=tuple(sorted(latest)), region=region, regions=dict(sorted(regions.items())),
        symptom_text=newest.symptom_text if newest else "",
    )


def judge(rule: AlertRule, stats: GroupStats, *, is_open: bool) -> tuple[Verdict, Assessment]:
    """Raise, update, close or leave alone the group's alert (``is_open``: one is open now)."""
    a = assess(rule, stats)
    if not is_open:
        return (Verdict.raise_ if a.significant else Verdict.none), a
    return (Verdict.close if a.subsided else Verdict.update), a


__all__ = ["AlertRule", "Assessment", "DefectPoint", "GroupKey", "GroupStats", "Verdict", "assess", "baseline",
           "binom_sf", "judge", "p_value", "poisson_sf"]
