"""Check a file of labelled dialogues against eval/LABELLING.md and its shop.

    python scripts/check_dialogues.py data/dialogues/w1/home.jsonl --shop data/shops/home

Beyond what ``assist replay`` validates (JSON, field types, known labels), this checks what the
labelling rules require: every customer turn fully labelled, every agent turn with ``qa``, KB ids
and SKUs that exist in the shop, ``cross_sell_ok`` and ``cross_sell`` agreeing, timestamps in
order. Prints one line per problem; exit 1 if any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assist.replay.parse import parse_logs
from assist.shop.load import load_shop

CUSTOMER_FIELDS = ("intent", "sentiment", "emotion", "signals", "actions", "cross_sell_ok")


def check(path: Path, shop_dir: Path) -> list[str]:
    shop = load_shop(shop_dir)
    kb_ids = {e.id for e in shop.kb}
    problems: list[str] = []
    parsed = parse_logs(path)
    problems += [f"{path}:{p.line}: {p.field}: {p.message}" for p in parsed.problems]
    raw = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                d = json.loads(line)
                raw[d.get("conversation_id")] = (lineno, d)
            except json.JSONDecodeError:
                pass
    for pc in parsed.conversations:
        conv = pc.conversation
        lineno, d = raw.get(conv.conversation_id, (pc.line, {}))
        where = f"{path}:{lineno} {conv.conversation_id}"
        for key in ("shop", "writer"):
            if not d.get(key):
                problems.append(f"{where}: missing top-level '{key}'")
        for o in conv.customer.orders if conv.customer else []:
            if o.sku not in shop.catalog:
                problems.append(f"{where}: order {o.order_id} sku {o.sku} not in the shop catalog")
        last_ts = None
        for t in conv.turns:
            tw = f"{where}/{t.turn_id}"
            if t.ts is None:
                problems.append(f"{tw}: no ts")
            elif last_ts is not None and t.ts < last_ts:
                problems.append(f"{tw}: ts goes back in time")
            last_ts = t.ts or last_ts
            g = t.gold
            if t.role == "agent":
                if g is None or g.qa is None:
                    problems.append(f"{tw}: agent turn without gold.qa")
                continue
            if g is None:
                problems.append(f"{tw}: customer turn without gold")
                continue
            missing = [f for f in CUSTOMER_FIELDS if getattr(g, f) is None]
            if missing:
                problems.append(f"{tw}: missing gold {missing}")
            for k in g.kb_ids or []:
                if k not in kb_ids:
                    problems.append(f"{tw}: kb id {k!r} not in the shop KB")
            if g.cross_sell_ok is not None and g.actions is not None and \
                    g.cross_sell_ok != ("cross_sell" in g.actions):
                problems.append(f"{tw}: cross_sell_ok={g.cross_sell_ok} but actions={g.actions}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--shop", type=Path, required=True)
    args = ap.parse_args(argv)
    problems = check(args.file, args.shop)
    for p in problems:
        print(p)
    n = sum(1 for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"{n} conversations, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
