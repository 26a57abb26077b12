"""Measured precision of each word list the policy keeps as a high-precision override.

    python scripts/override_precision.py [--all-writers]

For every customer turn of the tuning conversations (data/dialogues/split.yaml), the policy's word
lists are run on the turn as the service runs them (normalised text, the classifiers' cue words),
and each list's hits are compared with the gold signal it stands for. Prints a table for
models/MODEL_CARD.md. Lists with no gold counterpart (goodbye, shipping, batch) are not scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"solved": "solved", "threat": "threat_insult", "safety": "safety", "damage": "damage", "repeat_contact": "repeat_contact",
         "retry": "guidance_failed", "confirm": "solved", "affirm": "affirm", "deny": "deny"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all-writers", action="store_true", help="also the held-out writers and shops")
    args = ap.parse_args(argv)
    from assist.policy.config import load_policy_config
    from assist.policy.facts import extract_signals
    from assist.runtime import E5_NAME, build_encoders  # noqa: F401
    from assist.settings import PACKAGE_DATA, Settings
    from assist.training.dialogue import Split, dialogue_files, load_conversations
    from assist.types import Analysis, Retrieval
    from assist.understanding.encoder import E5Encoder
    from assist.understanding.intent import IntentClassifier
    from assist.understanding.normalise import normalise
    from assist.understanding.sentiment import SentimentClassifier
    from assist.understanding.tokenise import Tokeniser, domain_words

    settings = Settings()
    split = Split.load(ROOT / "data" / "dialogues" / "split.yaml")
    files = [f for f in dialogue_files(ROOT / "data" / "dialogues") if args.all_writers or split.tunable(f.writer, f.shop)]
    turns = [(t.text, {str(s) for s in t.gold.signals or []}) for items in load_conversations(files).values()
             for _, c in items for t in c.conversation.turns if t.role == "customer" and t.gold and t.gold.signals is not None]
    cfg = load_policy_config(PACKAGE_DATA)
    tok = Tokeniser(domain_words(PACKAGE_DATA / "domain_words.txt"))
    enc = E5Encoder()
    intent = IntentClassifier.load(settings.models_dir / "intent")
    sentiment = SentimentClassifier.load(settings.models_dir / "sentiment")
    norms = [normalise(t) for t, _ in turns]
    vecs = enc.encode_queries(norms)
    counts = {k: [0, 0, 0] for k in PAIRS}  # hits, correct hits, gold positives
    for (text, gold), norm, vec in zip(turns, norms, vecs, strict=True):
        tokens = tok.tokenise(norm)
        a = Analysis(text=text, normalised=norm, tokens=tokens, intent=intent.predict(norm, tokens, vec),
                     sentiment=sentiment.predict(norm, tokens, vec), kb=Retrieval(hits=[], answered=False))
        s = extract_signals(cfg, a)
        for name, sig in PAIRS.items():
            hit = cfg.signals.solved.hit(norm) if name == "solved" else \
                bool(getattr(s, {"confirm": "confirmed"}.get(name, name)))
            counts[name][0] += hit
            counts[name][1] += hit and sig in gold
            counts[name][2] += sig in gold
    print(f"{len(turns)} customer turns ({'all writers' if args.all_writers else 'tuning writers and shops'})")
    print("| word list | gold signal | hits | precision | recall |")
    print("|---|---|---|---|---|")
    for name, (h, ok, pos) in counts.items():
        print(f"| {name} | {PAIRS[name]} | {h} | {ok / h if h else float('nan'):.2f} | {ok / pos if pos else float('nan'):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
