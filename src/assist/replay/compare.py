"""Compare two replay reports metric by metric, so a regression is visible at a glance.

``assist replay LOGS --compare OLD/report.json`` prints one line per summary metric that either
report measured: old value, new value, delta and a verdict. A verdict is ``worse`` when the
metric moved in its bad direction by more than its tolerance:

- ratios (accuracy, F1, recall, ...): any change over 0.001 (0.1 point) counts;
- latency: more than 10 % *and* more than 1 ms, because timings are noisy between runs;
- counts that describe the data (``*.n``, ``input.turns``, ...) are shown, never judged.

Reports of another ``format`` or a newer ``format_version`` are refused with
:class:`~assist.errors.ReplayInputError` rather than compared key by key by accident.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assist.errors import ReplayInputError
from assist.replay.metrics import is_neutral, lower_is_better
from assist.replay.report import FORMAT, FORMAT_VERSION

RATIO_TOLERANCE = 0.001
LATENCY_REL_TOLERANCE = 0.10
LATENCY_ABS_TOLERANCE_MS = 1.0


@dataclass(frozen=True)
class Delta:
    """One metric in two reports. ``verdict``: better · worse · same · new · gone · info."""

    key: str
    old: float | None
    new: float | None
    delta: float | None
    verdict: str


def load_report(path: Path) -> dict[str, Any]:
    """Read a ``report.json``; refuse anything that is not a replay report this version understands."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReplayInputError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReplayInputError(f"{path}: not a readable JSON report ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReplayInputError(f"{path}: not an assist replay report (format is not {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ReplayInputError(f"{path}: report format_version {version!r} is newer than this assist "
                               f"understands ({FORMAT_VERSION}); upgrade assist to compare")
    if not isinstance(data.get("summary"), dict):
        raise ReplayInputError(f"{path}: report has no summary")
    return data


def _verdict(key: str, old: float | None, new: float | None) -> tuple[float | None, str]:
    if old is None and new is None:
        return None, "same"
    if old is None:
        return None, "new"
    if new is None:
        return None, "gone"
    delta = new - old
    if is_neutral(key):
        return delta, "info" if delta else "same"
    if key.startswith("latency."):
        tol = max(abs(old) * LATENCY_REL_TOLERANCE, LATENCY_ABS_TOLERANCE_MS)
    elif key.startswith("cross_sell.") or key.startswith("input."):
        tol = 0.0  # counts of violations / skipped lines: every single one matters
    else:
        tol = RATIO_TOLERANCE
    if abs(delta) <= tol:
        return delta, "same"
    good = delta < 0 if lower_is_better(key) else delta > 0
    return delta, "better" if good else "worse"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Delta]:
    """Deltas of every summary key present in either summary, in the new report's key order."""
    keys = list(new) + [k for k in old if k not in new]
    out = []
    for k in keys:
        o, n = old.get(k), new.get(k)
        d, v = _verdict(k, o, n)
        out.append(Delta(k, o, n, None if d is None else round(d, 4), v))
    return out


def regressions(deltas: list[Delta]) -> list[Delta]:
    return [d for d in deltas if d.verdict == "worse"]


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return f"{x:.4f}"


_MARK = {"better": "▲ better", "worse": "▼ WORSE", "same": "", "new": "new", "gone": "gone", "info": ""}


def render(deltas: list[Delta], *, only_changed: bool = True) -> str:
    """A text table of the deltas (unchanged and never-measured rows left out when ``only_changed``)."""
    rows = [d for d in deltas if not only_changed or (d.verdict != "same")]
    if not rows:
        return "no metric changed"
    width = max(len(d.key) for d in rows)
    lines = [f"{'metric':<{width}}  {'old':>9}  {'new':>9}  {'delta':>9}"]
    for d in rows:
        delta = "–" if d.delta is None else f"{d.delta:+.4f}".rstrip("0").rstrip(".")
        lines.append(f"{d.key:<{width}}  {_num(d.old):>9}  {_num(d.new):>9}  {delta:>9}  {_MARK[d.verdict]}".rstrip())
    worse = regressions(deltas)
    lines.append(f"{len(worse)} regression(s)" + (": " + ", ".join(d.key for d in worse) if worse else ""))
    return "\n".join(lines)
