"""Quality early warning benchmark: what recording a defect adds to a turn's transaction, and what
judging a group and a whole sweep cost, on a store holding many defects.

Usage::

    python bench/quality.py                       # 100k defects over 180 days, 2000 SKUs, SQLite
    python bench/quality.py --defects 20000 --url postgresql+asyncpg://postgres@127.0.0.1:5432/test

The store is filled in bulk with synthetic defects (random SKU, batch of the month, one of 4 KB
symptoms, 30 regions). Then, at "now" = the end of the period:

- **record**: ``QualityMonitor.record_turn`` for a new report inside a transaction (what the turn's
  commit does extra), p50/p99 over ``--n`` reports, timed inside the transaction;
- **judge**: ``QualityMonitor.evaluate`` of one group (its own transaction: 5 queries), p50/p99;
- **sweep**: one ``QualityMonitor.sweep`` (one grouped count over the window, then a judgment of
  each group with at least ``min_count`` conversations in it and of each open alert).

Results go to bench/results/quality-<date>.json and stdout, with machine details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from assist.insights.quality import AlertRule, GroupKey
from assist.policy.actions import Action, ActionType
from assist.service.metrics import Metrics
from assist.service.quality import QualityMonitor
from assist.state import ConversationState, Problem
from assist.store import Database
from assist.store.models import ConversationRow, QualityDefectRow
from assist.types import Intent

END = datetime(2026, 12, 1, tzinfo=UTC)
RESULTS = Path(__file__).resolve().parent / "results"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


async def _fill(db: Database, n: int, skus: int, days: int, rng: random.Random) -> None:
    rows, convs = [], []
    for i in range(n):
        at = END - timedelta(days=rng.uniform(0, days))
        cid = f"c{i}"
        convs.append({"id": cid, "customer_id": None, "state": {}, "last_seq": 0, "created_at": at, "updated_at": at})
        rows.append({"conversation_id": cid, "problem_id": "p", "turn_id": "t", "action_id": "a",
                     "sku": f"S{rng.randrange(skus)}", "batch": f"B{at.month}", "region": f"R{rng.randrange(30)}",
                     "symptom": f"kb:k{rng.randrange(4)}", "symptom_text": "不出热风", "kind": "failed_guidance",
                     "status": "reported", "retracted_reason": None, "reported_at": at, "updated_at": at})
    for k in range(0, n, 5000):
        async with db.transaction() as uow:
            await uow.session.execute(insert(ConversationRow), convs[k:k + 5000])
            await uow.session.execute(insert(QualityDefectRow), rows[k:k + 5000])


def _states(cid: str) -> tuple[ConversationState, ConversationState, Action]:
    p = Problem(id=f"{cid}:t1", family="product", intent=Intent.product_defect, kb_ids=["k1"])
    before = ConversationState(conversation_id=cid, problem=p)
    after = before.model_copy(update={"problem": p.model_copy(update={"defect": True, "defect_reported": True})})
    action = Action(id=f"{cid}:t2:quality_report:0", type=ActionType.quality_report, sku="S1",
                    details={"sku": "S1", "batch": "B12", "region": "R1", "symptom": "不出热风"})
    return before, after, action


async def run(url: str, n_defects: int, skus: int, days: int, n: int) -> dict[str, Any]:
    rng = random.Random(13)
    async with Database.open(url) as db:
        await db.migrate()
        t = time.perf_counter()
        await _fill(db, n_defects, skus, days, rng)
        fill_s = time.perf_counter() - t
        mon = QualityMonitor(db=db, rule=AlertRule(), metrics=Metrics(), webhooks=True)
        record_ms, judge_ms = [], []
        for i in range(n):
            cid = f"new{i}"
            before, after, action = _states(cid)
            async with db.transaction() as uow:
                await uow.conversations.ensure(cid)
                t = time.perf_counter()
                await mon.record_turn(uow, conversation_id=cid, turn_id="t2", at=END, before=before, after=after,
                                      actions=[action], intent="product_defect")
                record_ms.append((time.perf_counter() - t) * 1e3)
            key = GroupKey(f"S{rng.randrange(skus)}", "B11", f"kb:k{rng.randrange(4)}")
            t = time.perf_counter()
            await mon.evaluate([key], now=END)
            judge_ms.append((time.perf_counter() - t) * 1e3)
        async with db.transaction() as uow:
            counts = await uow.quality.window_counts(END - timedelta(days=14), END)
        groups, judged = len(counts), sum(1 for c in counts.values() if c >= 3)
        t = time.perf_counter()
        await mon.sweep(now=END)
        sweep_s = time.perf_counter() - t
    return {
        "defects": n_defects, "skus": skus, "days": days, "groups_in_window": groups, "fill_s": round(fill_s, 2),
        "record_ms": {"p50": _pct(record_ms, 0.5), "p99": _pct(record_ms, 0.99), "mean": round(statistics.mean(record_ms), 3)},
        "judge_group_ms": {"p50": _pct(judge_ms, 0.5), "p99": _pct(judge_ms, 0.99)},
        "groups_judged_by_sweep": judged, "sweep_s": round(sweep_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defects", type=int, default=100_000)
    ap.add_argument("--skus", type=int, default=2000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--n", type=int, default=300, help="reports recorded and groups judged")
    ap.add_argument("--url", default="", help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        result = asyncio.run(run(url, args.defects, args.skus, args.days, args.n))
    result["backend"] = url.split(":")[0]
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                         "cores": os.cpu_count(), "loadavg_at_end": os.getloadavg()}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"quality-{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
