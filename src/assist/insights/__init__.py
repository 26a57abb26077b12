"""What conversations add up to across a shop: the quality early warning.

:mod:`assist.insights.defects` says which defect reports count; :mod:`assist.insights.quality`
holds the test that turns them into alerts (kept import-light: settings build its ``AlertRule``).
"""

from assist.insights.quality import AlertRule, GroupKey, GroupStats, Verdict, judge, poisson_sf

__all__ = ["AlertRule", "GroupKey", "GroupStats", "Verdict", "judge", "poisson_sf"]
