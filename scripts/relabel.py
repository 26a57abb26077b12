"""Second-labeller agreement (eval/LABELLING.md): draw the blind sample, then compute Cohen's kappa.

    python scripts/relabel.py sample --per-writer 10 --out eval/relabel/blind.jsonl
    # a second labeller fills in gold on every turn of blind.jsonl -> eval/relabel/second.jsonl
    python scripts/relabel.py kappa eval/relabel/second.jsonl --out eval/relabel/kappa.json

The sample is a seeded random draw of conversations per writer (10 % of the corpus), with every
``gold`` removed. Kappa is computed per field over customer turns: intent, sentiment, emotion,
cross_sell_ok, each action type (present / absent) and each signal (present / absent); ``qa`` per
flag over agent turns.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from assist.replay.parse import GOLD_ACTIONS
from assist.types import Signal

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = GOLD_ACTIONS
SIGNALS = tuple(sig.value for sig in Signal)
QA = ("forbidden_promise", "superlative", "rude", "personal_data", "promise_tracked")


def corpus() -> dict[str, dict]:
    out = {}
    for f in sorted((ROOT / "data" / "dialogues").glob("w*/*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                out[d["conversation_id"]] = d
    return out


def sample(per_writer: int, out: Path, seed: int = 20261203) -> None:
    convs = corpus()
    by_writer: dict[str, list[str]] = {}
    for cid, d in convs.items():
        by_writer.setdefault(d.get("writer", "?"), []).append(cid)
    rng = random.Random(seed)
    chosen = []
    for w in sorted(by_writer):
        ids = sorted(by_writer[w])
        chosen += rng.sample(ids, min(per_writer, len(ids)))
    rng.shuffle(chosen)
    with out.open("w", encoding="utf-8") as fh:
        for cid in chosen:
            d = json.loads(json.dumps(convs[cid]))
            d.pop("writer", None)
            for t in d["turns"]:
                t.pop("gold", None)
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"{len(chosen)} conversations -> {out}")


def cohen(a: list, b: list) -> float | None:
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return 1.0 if pe == 1 else round((po - pe) / (1 - pe), 3)


def kappa(second: Path) -> dict:
    first = corpus()
    pairs_c: list[tuple[dict, dict]] = []
    pairs_a: list[tuple[dict, dict]] = []
    for line in second.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        orig = first.get(d["conversation_id"])
        if orig is None:
            continue
        by_id = {t["turn_id"]: t for t in orig["turns"]}
        for t in d["turns"]:
            o = by_id.get(t["turn_id"])
            if o is None or "gold" not in t or "gold" not in o:
                continue
            (pairs_c if t["role"] == "customer" else pairs_a).append((o["gold"], t["gold"]))
    out: dict = {"customer_turns": len(pairs_c), "agent_turns": len(pairs_a), "kappa": {}}
    k = out["kappa"]
    for field in ("intent", "sentiment", "emotion", "cross_sell_ok"):
        ab = [(str(x.get(field)), str(y.get(field))) for x, y in pairs_c]
        k[field] = cohen([a for a, _ in ab], [b for _, b in ab])
    for act in ACTIONS:
        k[f"actions.{act}"] = cohen([act in (x.get("actions") or []) for x, _ in pairs_c],
                                    [act in (y.get("actions") or []) for _, y in pairs_c])
    for s in SIGNALS:
        k[f"signals.{s}"] = cohen([s in (x.get("signals") or []) for x, _ in pairs_c],
                                  [s in (y.get("signals") or []) for _, y in pairs_c])
    for q in QA:
        k[f"qa.{q}"] = cohen([q in (x.get("qa") or []) for x, _ in pairs_a], [q in (y.get("qa") or []) for _, y in pairs_a])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("sample")
    sp.add_argument("--per-writer", type=int, default=10)
    sp.add_argument("--out", type=Path, default=ROOT / "eval" / "relabel" / "blind.jsonl")
    sp = sub.add_parser("kappa")
    sp.add_argument("second", type=Path)
    sp.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "sample":
        sample(args.per_writer, args.out)
        return 0
    res = kappa(args.second)
    text = json.dumps(res, ensure_ascii=False, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
