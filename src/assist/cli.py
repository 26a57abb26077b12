"""The ``assist`` command: a thin layer over the same units the service uses.

Exit codes: 0 ok, 1 failed (e.g. replay floors not met), 2 invalid input or data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from assist.errors import AssistError, DataFileError
from assist.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "shop", None):
        overrides["shop_dir"] = Path(args.shop)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return Settings(**overrides)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def cmd_kb_validate(args: argparse.Namespace) -> int:
    from assist.shop import validate_shop

    problems = validate_shop(Path(args.dir))
    if args.json:
        _print_json({"ok": not problems, "problems": [p.__dict__ for p in problems]})
    elif problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
    else:
        print(f"{args.dir}: ok")
    return 2 if problems else 0


def cmd_kb_build(args: argparse.Namespace) -> int:
    from assist.runtime import build_index

    settings = _settings(args)
    manifest = build_index(settings, out_dir=Path(args.out), progress=not args.json)
    if args.json:
        _print_json(manifest)
    else:
        print(f"index written to {args.out}: {manifest.get('entries')} entries, "
              f"{manifest.get('index_type')}, encoder {manifest.get('encoder')}")
    return 0


def _render_analysis(a: Any) -> str:
    lines = [
        f"text      {a.text}",
        f"tokens    {' / '.join(a.tokens)}",
        f"intent    {a.intent.label} ({a.intent.confidence:.2f})  "
        + "  ".join(f"{s.label}:{s.score:.2f}" for s in a.intent.top[1:])
        + (f"  cues: {', '.join(a.intent.cues)}" if a.intent.cues else ""),
        f"sentiment {a.sentiment.label} ({a.sentiment.score:+.2f})  emotion {a.sentiment.emotion}"
        f" ({a.sentiment.intensity:.2f})" + (f"  cues: {', '.join(a.sentiment.cues)}" if a.sentiment.cues else ""),
        f"kb        {'answered' if a.kb.answered else 'no good answer'}",
    ]
    for i, h in enumerate(a.kb.hits, 1):
        lines.append(f"  {i}. [{h.score:.2f}] {h.kb_id:<28} {h.question}")
    lines.append("timings   " + "  ".join(f"{k} {v:.2f}ms" for k, v in a.timings_ms.items()))
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    from assist.runtime import load_runtime

    runtime = load_runtime(_settings(args), progress=False)
    analyses = runtime.pipeline.analyse_many(args.text)
    if args.json:
        _print_json([a.model_dump(mode="json") for a in analyses])
    else:
        print("\n\n".join(_render_analysis(a) for a in analyses))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from assist.training.classifiers import train_classifiers

    settings = _settings(args)
    out = Path(args.out or settings.models_dir)
    # The cross-writer evaluation of the utterance models (five extra model selections) is opt-in,
    # so that retraining everything stays within a quarter of an hour on a 2-core machine.
    metrics = train_classifiers(Path(args.data), out, evaluate_models=args.evaluate)
    if not args.skip_dialogue:
        # the dialogue model reads the utterance classifiers' outputs: train it on the new ones
        metrics["dialogue"] = _train_dialogue(settings.model_copy(update={"models_dir": out}), out / "dialogue")
    _print_json(metrics) if args.json else print(json.dumps(metrics, ensure_ascii=False, indent=1)[:4000])
    return 0


def _train_dialogue(settings: Settings, out: Path) -> dict[str, Any]:
    from assist.training.dialogue import train_dialogue

    return train_dialogue(settings, out, progress=lambda m: print(m, file=sys.stderr))


def cmd_train_dialogue(args: argparse.Namespace) -> int:
    settings = _settings(args)
    report = _train_dialogue(settings, Path(args.out or settings.models_dir / "dialogue"))
    _print_json(report) if args.json else print(json.dumps(report["leave_writer_out_cv"], ensure_ascii=False, indent=1))
    return 0


def cmd_eval_dialogues(args: argparse.Namespace) -> int:
    """Leave-writer-out / leave-shop-out figures (assist.replay.protocol); --baseline: word lists only."""
    from assist.policy.learned import load_action_model
    from assist.replay.protocol import markdown, run_protocol
    from assist.understanding.dialogue import load_dialogue_model

    settings = _settings(args)
    mdir = settings.models_dir / "dialogue"
    model = None if args.baseline else load_dialogue_model(mdir)
    actions = None if args.baseline or args.no_actions else load_action_model(mdir / "actions.json")
    groups = tuple(args.groups.split(",")) if args.groups else ("held_out", "tuned")
    report = run_protocol(settings, model, actions, groups=groups, progress=lambda m: print(m, file=sys.stderr))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    _print_json(report) if args.json else print(markdown(report))
    return 0


def cmd_train_fusion(args: argparse.Namespace) -> int:
    from assist.runtime import train_fusion_for_shop

    metrics = train_fusion_for_shop(_settings(args), Path(args.paraphrases), Path(args.out) if args.out else None)
    _print_json(metrics)
    return 0


def _with_db(settings: Settings, fn: Any) -> Any:
    """Run ``fn(db)`` (a coroutine function) on the service's database, migrated to head first."""
    import asyncio

    from assist.store.db import Database

    async def run() -> Any:
        async with Database.open(settings.effective_database_url) as db:
            await db.migrate()
            return await fn(db)

    return asyncio.run(run())


def _exposure(settings: Settings) -> str | None:
    from assist.service.auth import exposure_problem

    async def has_keys(db: Any) -> bool:
        async with db.transaction() as uow:
            return bool(settings.api_token) or await uow.keys.count_active() > 0

    return exposure_problem(settings, has_keys=_with_db(settings, has_keys))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from assist.service.app import create_app

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _exposure(settings)
    if problem is not None:  # refused before binding: nothing listens, open, on the network
        print(f"error [auth.open]: {problem}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                ws_max_size=1 << 20, ws_per_message_deflate=settings.ws_compression)
    return 0


def _key_row(k: Any) -> dict[str, Any]:
    return {"id": k.id, "tenant": k.tenant_id, "scope": k.scope.value, "label": k.label,
            "created_at": k.created_at.isoformat(), "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}


def cmd_keys_create(args: argparse.Namespace) -> int:
    from assist.access import create_key
    from assist.store.records import Scope

    record, token = _with_db(Settings(), lambda db: create_key(db, args.tenant, Scope(args.scope), label=args.label))
    if args.json:
        _print_json({**_key_row(record), "key": token})
    else:
        print(token)
        print(f"key {record.id}: tenant {record.tenant_id}, scope {record.scope.value}. The key is shown only "
              "this once; only its hash is stored.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from assist.access import list_keys

    keys = _with_db(Settings(), lambda db: list_keys(db, args.tenant))
    if args.json:
        _print_json([_key_row(k) for k in keys])
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        print(f"{k.id}  {k.tenant_id:<20} {k.scope.value:<8} {state:<24} {k.label or ''}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from assist.access import revoke_key

    record = _with_db(Settings(), lambda db: revoke_key(db, args.key_id))
    print(f"key {record.id} revoked (running services stop accepting it within ASSIST_AUTH_CACHE_S)")
    return 0


def cmd_tenants_add(args: argparse.Namespace) -> int:
    from assist.access import add_tenant

    record = _with_db(Settings(), lambda db: add_tenant(db, args.tenant, Path(args.shop)))
    print(f"tenant {record.id}: shop {record.shop_dir}")
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from assist.access import list_tenants

    settings = Settings()
    rows = [{"id": "default", "shop_dir": str(settings.shop_dir)}] + [
        {"id": t.id, "shop_dir": t.shop_dir} for t in _with_db(settings, list_tenants)]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['id']:<20} {r['shop_dir']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from assist.replay.cli import run_replay_cli

    return run_replay_cli(args, _settings(args))


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[2] / "bench" / f"{args.which}.py"
    if not script.exists():
        print(f"no benchmark script {script}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assist", description="Real-time agent assist for Chinese e-commerce CS")
    sub = p.add_subparsers(dest="cmd", required=True)

    def shop_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--shop", help="shop directory (DESIGN §3); default: the demo shop kb_data/")

    sp = sub.add_parser("serve", help="run the HTTP/WebSocket service")
    shop_opt(sp)
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.set_defaults(fn=cmd_serve)

    kb = sub.add_parser("kb", help="knowledge base tools").add_subparsers(dest="kb_cmd", required=True)
    sp = kb.add_parser("validate", help="validate a shop directory; every bad record with file, line, field")
    sp.add_argument("dir")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_kb_validate)
    sp = kb.add_parser("build", help="build and persist the search index for a shop")
    shop_opt(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_kb_build)

    sp = sub.add_parser("analyze", help="analyse customer turns: intent, sentiment, KB hits")
    shop_opt(sp)
    sp.add_argument("text", nargs="+")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_analyze)

    sp = sub.add_parser("train", help="train the intent and sentiment classifiers")
    sp.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "data" / "train" / "utterances.jsonl"))
    sp.add_argument("--out", help="models directory (default: ASSIST_MODELS_DIR)")
    sp.add_argument("--skip-dialogue", action="store_true", help="train only the utterance classifiers")
    sp.add_argument("--evaluate", action="store_true",
                    help="also the utterance classifiers' cross-writer evaluation (~6 min more)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_train)

    sp = sub.add_parser("train-dialogue", help="train the dialogue model (signals, intent, sentiment in context)")
    sp.add_argument("--out", help="model directory (default: <models>/dialogue)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_train_dialogue)

    sp = sub.add_parser("eval-dialogues", help="leave-writer-out / leave-shop-out evaluation of the decisions")
    sp.add_argument("--baseline", action="store_true", help="without the dialogue model (word lists only)")
    sp.add_argument("--no-actions", action="store_true", help="the dialogue model without the learned action judgment")
    sp.add_argument("--groups", help="comma-separated: held_out,writers_out,shop_out,both_out,tuned")
    sp.add_argument("--out", help="write <out>.json and <out>.md")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_eval_dialogues)

    sp = sub.add_parser("train-fusion", help="calibrate hybrid retrieval fusion on a paraphrase set")
    shop_opt(sp)
    sp.add_argument("--paraphrases", required=True)
    sp.add_argument("--out", help="fusion.json path (default: <models>/retrieval/fusion.json)")
    sp.set_defaults(fn=cmd_train_fusion)

    sp = sub.add_parser("replay", help="replay logged conversations and score them")
    shop_opt(sp)
    sp.add_argument("logs", nargs="?")
    sp.add_argument("--out", default="replay_out")
    sp.add_argument("--compare", help="an earlier report.json: print metric deltas")
    sp.add_argument("--floors", help="YAML of metric floors; exit 1 when one is not met")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_replay)

    keys = sub.add_parser("keys", help="API keys (stored hashed in the service's database)").add_subparsers(
        dest="keys_cmd", required=True)
    sp = keys.add_parser("create", help="mint a key for a tenant and scope; prints it once")
    sp.add_argument("--tenant", required=True)
    sp.add_argument("--scope", required=True, choices=["console", "crm", "admin"])
    sp.add_argument("--label", help="what the key is for (shown by keys list)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_keys_create)
    sp = keys.add_parser("list", help="list keys (never their secrets)")
    sp.add_argument("--tenant")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_keys_list)
    sp = keys.add_parser("revoke", help="revoke a key by its id")
    sp.add_argument("key_id")
    sp.set_defaults(fn=cmd_keys_revoke)

    tenants = sub.add_parser("tenants", help="tenants and their shop directories").add_subparsers(
        dest="tenants_cmd", required=True)
    sp = tenants.add_parser("add", help="register a tenant with its own shop directory (KB, catalog, policy)")
    sp.add_argument("tenant")
    sp.add_argument("--shop", required=True)
    sp.set_defaults(fn=cmd_tenants_add)
    sp = tenants.add_parser("list", help="list tenants")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_tenants_list)

    sp = sub.add_parser("bench", help="run a benchmark script from bench/")
    sp.add_argument("which", choices=["pipeline", "ws_load"])
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except DataFileError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except AssistError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
