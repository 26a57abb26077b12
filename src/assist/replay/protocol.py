"""The evaluation protocol for decisions: leave-writer-out and leave-shop-out (eval/LABELLING.md).

Dialogues live in ``data/dialogues/<writer>/<shop>.jsonl``; ``data/dialogues/split.yaml`` names the
writers and shops used for tuning and those kept for reporting. Groups scored:

- ``writers_out``: conversations of the report writers on tuning shops (unseen writers);
- ``shop_out``: conversations of tuning writers on the report shops (unseen shop);
- ``both_out``: report writers on report shops (nothing seen);
- ``held_out``: everything not used for tuning (the union of the three: the headline figure);
- ``tuned``: the tuning conversations themselves — in-sample, shown for reference only.

Each group is replayed shop by shop through the same pipeline and engine as the service (one
runtime per shop), then scored with :mod:`assist.replay.metrics` plus what the decisions are judged
by: key-action micro precision/recall (escalate, quality_report, recovery, care, cross_sell,
clarify), per-action P/R, cross-sell violations and good moments taken, and false alarms (an
escalate or quality_report on a turn whose gold says the problem is solved).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from assist.replay.metrics import actions, compute, predicted_action_set
from assist.replay.results import ConversationResult
from assist.settings import Settings
from assist.training.dialogue import REPO, DialogueFile, Split, dialogue_files, load_conversations, shop_dir

KEY_ACTIONS: tuple[str, ...] = ("escalate", "quality_report", "recovery", "care", "cross_sell", "clarify")
GROUPS: tuple[str, ...] = ("held_out", "writers_out", "shop_out", "both_out", "tuned")


def group_of(split: Split, f: DialogueFile) -> str:
    w_out = f.writer in split.report_writers or f.writer not in split.tune_writers
    s_out = f.shop in split.report_shops or f.shop not in split.tune_shops
    if w_out and s_out:
        return "both_out"
    if w_out:
        return "writers_out"
    if s_out:
        return "shop_out"
    return "tuned"


def replay_files(settings: Settings, files: Sequence[DialogueFile], dialogue: Any, actions: Any = None, *,
                 root: Path = REPO, progress: Callable[[str], None] | None = None,
                 ) -> dict[str, list[ConversationResult]]:
    """Replay ``files`` (one runtime per shop); results keyed by ``writer/shop``."""
    from assist.replay.run import Replayer, engine_for_shop
    from assist.runtime import load_runtime

    by_shop = load_conversations(files)
    out: dict[str, list[ConversationResult]] = {}
    for shop, items in sorted(by_shop.items()):
        if progress:
            progress(f"replaying {shop}: {len(items)} conversations")
        rt = load_runtime(settings.model_copy(update={"shop_dir": shop_dir(shop, root), "index_dir": None}))
        engine = engine_for_shop(rt.shop, settings.rules_dir, dialogue, actions)
        results = Replayer(rt.pipeline, engine).run([c for _, c in items])
        for (f, _), r in zip(items, results, strict=True):
            out.setdefault(f"{f.writer}/{shop}", []).append(r)
    return out


def score(results: Sequence[ConversationResult]) -> dict[str, Any]:
    """The protocol's figures for one group of replayed conversations."""
    m = compute(results)
    cust = [t for c in results for t in c.turns if t.role == "customer" and t.error is None and t.gold]
    scored = [t for t in cust if t.gold and t.gold.actions is not None]
    key = actions([(set(t.gold.actions or []) & set(KEY_ACTIONS), predicted_action_set(t) & set(KEY_ACTIONS))
                   for t in scored if t.gold], types=KEY_ACTIONS)
    false_alarms = [f"{t.conversation_id}/{t.turn_id}" for t in cust
                    if t.gold and "solved" in {str(s) for s in t.gold.signals or []}
                    and predicted_action_set(t) & {"escalate", "quality_report"}]
    neg = m["sentiment"]["per_label"].get("negative", {})
    return {
        "conversations": len(results),
        "customer_turns": len(cust),
        "key_actions": {"precision": key["precision"], "recall": key["recall"], "f1": key["f1"]},
        "per_action": {t: {"precision": v["precision"], "recall": v["recall"], "support": v["support"]}
                       for t, v in m["actions"]["per_type"].items()},
        "actions_all": {"precision": m["actions"]["precision"], "recall": m["actions"]["recall"]},
        "cross_sell": {k: m["cross_sell"][k] for k in ("violations", "opportunities", "missed", "opportunity_recall")},
        "false_alarms": len(false_alarms),
        "false_alarm_turns": false_alarms[:50],
        "intent": {"accuracy": m["intent"]["accuracy"], "macro_f1": m["intent"]["macro_f1"]},
        "sentiment": {"accuracy": m["sentiment"]["accuracy"], "negative_recall": neg.get("recall")},
        "kb": {k: m["kb"].get(k) for k in ("recall_at_1", "recall_at_5", "mrr")},
        "qa": {"precision": m["qa"].get("precision"), "recall": m["qa"].get("recall")},
        "failed_conversations": sum(1 for c in results if c.error),
    }


def run_protocol(settings: Settings, dialogue: Any, actions: Any = None, *, root: Path = REPO,
                 groups: Sequence[str] = GROUPS, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Replay and score every group in ``groups``; also per writer and per shop for the held-out part."""
    split = Split.load(root / "data" / "dialogues" / "split.yaml")
    files = dialogue_files(root / "data" / "dialogues")
    wanted = set(groups)
    if "held_out" in wanted:
        wanted |= {"writers_out", "shop_out", "both_out"}
    chosen = [f for f in files if group_of(split, f) in wanted]
    by_key = replay_files(settings, chosen, dialogue, actions, root=root, progress=progress)
    group_files: dict[str, list[ConversationResult]] = {}
    for f in chosen:
        res = by_key.get(f"{f.writer}/{f.shop}", [])
        g = group_of(split, f)
        group_files.setdefault(g, []).extend(res)
        if g != "tuned":
            group_files.setdefault("held_out", []).extend(res)
    report: dict[str, Any] = {"split": {"tune_writers": sorted(split.tune_writers),
                                        "tune_shops": sorted(split.tune_shops),
                                        "report_writers": sorted(split.report_writers),
                                        "report_shops": sorted(split.report_shops)},
                              "model": getattr(dialogue, "meta", None) and {
                                  "trained_on": dialogue.meta.get("trained_on")},
                              "groups": {g: score(group_files[g]) for g in GROUPS if g in group_files}}
    per: dict[str, list[ConversationResult]] = {}
    for f in chosen:
        if group_of(split, f) == "tuned":
            continue
        res = by_key.get(f"{f.writer}/{f.shop}", [])
        per.setdefault(f"writer:{f.writer}", []).extend(res)
        per.setdefault(f"shop:{f.shop}", []).extend(res)
    report["held_out_by"] = {k: score(v) for k, v in sorted(per.items())}
    return report


def _f(x: Any) -> str:
    return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def markdown(report: dict[str, Any]) -> str:
    """The report as the tables the closing note and the model card quote."""
    rows = ["| group | conv | turns | key P | key R | escalate R | quality_report R | recovery R | care R | "
            "clarify R | cross-sell taken | violations | false alarms | intent F1 | sentiment acc | neg R |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    items = [(g, report["groups"][g]) for g in GROUPS if g in report["groups"]] + \
        list(report.get("held_out_by", {}).items())
    for name, s in items:
        pa = s["per_action"]
        cs = s["cross_sell"]
        rows.append("| " + " | ".join([
            name, str(s["conversations"]), str(s["customer_turns"]), _f(s["key_actions"]["precision"]),
            _f(s["key_actions"]["recall"]), _f(pa["escalate"]["recall"]), _f(pa["quality_report"]["recall"]),
            _f(pa["recovery"]["recall"]), _f(pa["care"]["recall"]), _f(pa["clarify"]["recall"]),
            f"{cs['opportunities'] - cs['missed']}/{cs['opportunities']}", str(cs["violations"]),
            str(s["false_alarms"]), _f(s["intent"]["macro_f1"]), _f(s["sentiment"]["accuracy"]),
            _f(s["sentiment"]["negative_recall"])]) + " |")
    return "\n".join(rows) + "\n"


__all__ = ["GROUPS", "KEY_ACTIONS", "group_of", "markdown", "replay_files", "run_protocol", "score"]
