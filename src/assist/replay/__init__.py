"""Replay and evaluation: score assist on logged conversations (DESIGN §3 format).

    parsed = read_logs(path)                          # validate every line; bad lines reported, skipped
    report, results = evaluate(parsed, pipeline=..., engine=..., shop=...)
    write_report(report, out_dir, results)            # report.json + report.html + turns.jsonl

Modules: :mod:`~assist.replay.parse` (log format), :mod:`~assist.replay.run` (in-memory replay
through the real pipeline and engine), :mod:`~assist.replay.metrics` (pure scoring),
:mod:`~assist.replay.report` (JSON + self-contained HTML), :mod:`~assist.replay.compare` (deltas
between reports), :mod:`~assist.replay.floors` (quality gates), :mod:`~assist.replay.cli`
(``assist replay``). The REST routes are in :mod:`assist.service.rest.replay`.

Importing this package loads no model: :mod:`~assist.replay.run` imports the engine lazily.
"""

from __future__ import annotations

from assist.replay.parse import ParsedLogs, parse_logs, read_logs
from assist.replay.report import FORMAT_VERSION, build_report, render_html, write_report
from assist.replay.run import Replayer, evaluate

__all__ = [
    "FORMAT_VERSION",
    "ParsedLogs",
    "Replayer",
    "build_report",
    "evaluate",
    "parse_logs",
    "read_logs",
    "render_html",
    "write_report",
]
