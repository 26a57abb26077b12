"""``assist replay``: score assist on logged conversations from the command line.

    assist replay LOGS.jsonl [--shop DIR] [--out DIR] [--compare OLD/report.json] [--floors FILE.yaml] [--json]
    assist replay --compare OLD/report.json [--out DIR]     # compare DIR/report.json with OLD, no replay

Writes ``DIR/report.json``, ``DIR/report.html`` and ``DIR/turns.jsonl`` (every prediction), shows
a tqdm progress bar on stderr, prints the summary (``--json``: one JSON object on stdout), the
deltas against ``--compare`` and the floor checks. Exit codes follow ``assist``: 0 ok, 1 a floor
not met (or a policy violation when floors are checked), 2 invalid input (no valid conversation,
unreadable floors or comparison report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assist.errors import ReplayInputError
from assist.replay import compare as cmp
from assist.replay import floors as fl
from assist.replay.parse import ParsedLogs, read_logs
from assist.replay.report import sha256_file, write_report
from assist.settings import Settings

# The lines of the human summary: (label, summary key, is a ratio).
_SUMMARY_LINES: tuple[tuple[str, str, bool], ...] = (
    ("intent accuracy", "intent.accuracy", True), ("intent macro-F1", "intent.macro_f1", True),
    ("sentiment accuracy", "sentiment.accuracy", True), ("sentiment macro-F1", "sentiment.macro_f1", True),
    ("KB recall@1", "kb.recall_at_1", True), ("KB recall@5", "kb.recall_at_5", True), ("KB MRR", "kb.mrr", True),
    ("action precision", "actions.precision", True), ("action recall", "actions.recall", True),
    ("cross-sell violations", "cross_sell.violations", False), ("cross-sell missed", "cross_sell.missed", False),
    ("cross-sell opportunity recall", "cross_sell.opportunity_recall", True),
    ("QA flag precision", "qa.precision", True), ("QA flag recall", "qa.recall", True),
    ("latency p50 ms", "latency.total.p50", False), ("latency p95 ms", "latency.total.p95", False),
    ("latency p99 ms", "latency.total.p99", False),
)


def _print_problems(parsed: ParsedLogs) -> None:
    for p in parsed.problems:
        print(f"skipped {p}", file=sys.stderr)
    for w in parsed.warnings:
        print(f"warning {w}", file=sys.stderr)


def render_summary(summary: dict[str, Any]) -> str:
    """The headline metrics as aligned text lines (``n/a``: no gold for it in these logs)."""
    lines = []
    for label, key, ratio in _SUMMARY_LINES:
        v = summary.get(key)
        shown = "n/a" if v is None else f"{v * 100:.1f}%" if ratio and key != "kb.mrr" else f"{v:.3f}" if ratio else f"{v:g}"
        lines.append(f"  {label:<30} {shown}")
    return "\n".join(lines)


def _progress_bar(total: int) -> tuple[Any, Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="conv", file=sys.stderr, desc="replay", dynamic_ncols=True)

    def on_progress(p: Any) -> None:
        bar.update(p.done - bar.n)
        if p.failed:
            bar.set_postfix(failed=p.failed, refresh=False)

    return bar, on_progress


def run_replay_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of ``assist replay`` (wired in :mod:`assist.cli`); returns the exit code."""
    out_dir = Path(args.out)
    # Validate every input before the (long) replay, so a typo in a floors file fails in a second.
    old = cmp.load_report(Path(args.compare)) if args.compare else None
    floors = fl.load_floors(Path(args.floors)) if args.floors else None

    if not args.logs:
        if old is None:
            raise ReplayInputError("give the logs to replay (JSONL), or --compare OLD/report.json to compare "
                                   f"{out_dir / 'report.json'} with an earlier report")
        report = cmp.load_report(out_dir / "report.json")
        return _finish(args, report, old, floors, paths=None)

    logs = Path(args.logs)
    parsed = read_logs(logs)
    _print_problems(parsed)
    if not parsed.conversations:
        raise ReplayInputError(f"{logs}: no valid conversation to replay ({len(parsed.problems)} problem(s))")

    from assist.replay.run import engine_for_shop, evaluate
    from assist.runtime import load_runtime

    runtime = load_runtime(settings, progress=not args.json)
    engine = engine_for_shop(runtime.shop, settings.rules_dir, runtime.dialogue, runtime.actions)
    bar, on_progress = _progress_bar(len(parsed.conversations))
    try:
        report, results = evaluate(parsed, pipeline=runtime.pipeline, engine=engine, shop=runtime.shop,
                                   progress=on_progress, input_sha256=sha256_file(logs))
    finally:
        bar.close()
    paths = write_report(report, out_dir, results)
    return _finish(args, report, old, floors, paths=paths)


def _finish(args: argparse.Namespace, report: dict[str, Any], old: dict[str, Any] | None,
            floors: dict[str, dict[str, float]] | None, *, paths: dict[str, Path] | None) -> int:
    summary = report["summary"]
    deltas = cmp.compare(old["summary"], summary) if old is not None else None
    checks = fl.check_floors(summary, floors) if floors is not None else None
    failed = fl.failed(checks) if checks is not None else []
    if args.json:
        print(json.dumps({
            "ok": not failed,
            "report": {k: str(v) for k, v in (paths or {}).items()},
            "summary": summary,
            "compare": None if deltas is None else [d.__dict__ for d in deltas],
            "regressions": None if deltas is None else [d.key for d in cmp.regressions(deltas)],
            "floors": None if checks is None else [{**c.__dict__} for c in checks],
        }, ensure_ascii=False, indent=2))
        return 1 if failed else 0
    inp = report["input"]
    print(f"replayed {inp['conversations']} conversations, {inp['turns']} turns"
          f" ({inp['skipped_lines']} line(s) skipped, {summary['input.failed_conversations']} failed)")
    print(render_summary(summary))
    if paths:
        print(f"report: {paths['html']}  ({paths['json'].name}, {paths['turns'].name if 'turns' in paths else ''})")
    if deltas is not None:
        print(f"\ncompared with {args.compare}:")
        print(cmp.render(deltas))
    if checks is not None:
        print(f"\nfloors ({args.floors}):")
        for c in checks:
            print(f"  {c}")
        print(f"{len(failed)} floor(s) not met" if failed else "all floors met")
    return 1 if failed else 0
