"""Quality gates for a replay: metric floors (and ceilings) read from a YAML file.

Format::

    version: 1
    min:                      # fail when the metric is below
      intent.accuracy: 0.80
      kb.recall_at_5: 0.85
    max:                      # fail when the metric is above
      latency.total.p95: 250

Keys are names from the report's ``summary`` (:func:`assist.replay.metrics.summary_keys`); an
unknown key is an input error, so a typo cannot turn a gate off. A metric that the logs could
not measure (no gold for it: ``null``) fails its floor — a gate that passes on missing labels is
no gate. Whatever the file says, ``cross_sell.violations`` must be 0: a cross-sell shown where it
is wrong is a policy breach, never a tolerable rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from assist.errors import ReplayInputError
from assist.replay.metrics import summary_keys

ALWAYS_MAX = {"cross_sell.violations": 0}


@dataclass(frozen=True)
class FloorCheck:
    key: str
    bound: str  # "min" or "max"
    limit: float
    value: float | None
    ok: bool

    def __str__(self) -> str:
        shown = "not measured (no gold for it)" if self.value is None else f"{self.value:g}"
        op = ">=" if self.bound == "min" else "<="
        return f"{'ok  ' if self.ok else 'FAIL'} {self.key} = {shown} (needs {op} {self.limit:g})"


def load_floors(path: Path) -> dict[str, dict[str, float]]:
    """Read and validate a floors file; returns ``{"min": {...}, "max": {...}}``."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReplayInputError(f"{path}: file not found") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayInputError(f"{path}: not readable YAML ({exc})") from exc
    return parse_floors(raw, source=str(path))


def parse_floors(raw: Any, *, source: str = "<floors>") -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise ReplayInputError(f"{source}: top level must be a mapping with 'min' and/or 'max'")
    unknown_top = set(raw) - {"version", "min", "max"}
    if unknown_top:
        raise ReplayInputError(f"{source}: unknown key(s) {sorted(unknown_top)}; expected version, min, max")
    if raw.get("version", 1) != 1:
        raise ReplayInputError(f"{source}: floors version {raw.get('version')!r} not supported (1)")
    known = set(summary_keys())
    out: dict[str, dict[str, float]] = {"min": {}, "max": {}}
    for bound in ("min", "max"):
        section = raw.get(bound) or {}
        if not isinstance(section, dict):
            raise ReplayInputError(f"{source}: '{bound}' must be a mapping metric -> number")
        for key, limit in section.items():
            if key not in known:
                raise ReplayInputError(f"{source}: {bound}.{key}: unknown metric (see report.json 'summary')")
            if isinstance(limit, bool) or not isinstance(limit, int | float):
                raise ReplayInputError(f"{source}: {bound}.{key}: limit must be a number, got {limit!r}")
            out[bound][key] = float(limit)
    return out


def check_floors(summary: dict[str, Any], floors: dict[str, dict[str, float]]) -> list[FloorCheck]:
    """Check every bound against a report summary; the always-on rules come first."""
    maxes = {**floors.get("max", {})}
    for key, limit in ALWAYS_MAX.items():
        maxes[key] = min(limit, maxes.get(key, limit))
    checks = []
    for key, limit in maxes.items():
        v = summary.get(key)
        checks.append(FloorCheck(key, "max", limit, v, v is not None and v <= limit))
    for key, limit in floors.get("min", {}).items():
        v = summary.get(key)
        checks.append(FloorCheck(key, "min", limit, v, v is not None and v >= limit))
    return checks


def failed(checks: list[FloorCheck]) -> list[FloorCheck]:
    return [c for c in checks if not c.ok]
