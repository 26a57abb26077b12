"""Helpers of the replay tests: paths, the loaded-runtime bundle, and hand-built results for the pure tests.

A plain module with a unique name (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assist.replay.parse import Gold
from assist.replay.results import ActionView, ConversationResult, TurnResult
from assist.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
DEMO_LOGS = FIXTURES / "replay" / "demo_conversations.jsonl"
UNSEEN_SHOP = FIXTURES / "shop_unseen"
UNSEEN_LOGS = UNSEEN_SHOP / "conversations.jsonl"


@dataclass
class Loaded:
    settings: Settings
    runtime: Any
    engine: Any


def cturn(cid: str, tid: str, *, gold: dict[str, Any] | None = None, intent: str = "logistics",
          sentiment: str = "neutral", score: float = 0.0, kb: tuple[str, ...] = (), actions: tuple[str, ...] = (),
          total_ms: float = 20.0, text: str = "在吗") -> TurnResult:
    return TurnResult(
        conversation_id=cid, turn_id=tid, role="customer", text=text,
        gold=Gold.model_validate(gold) if gold is not None else None,
        intent=intent, intent_confidence=0.9, sentiment=sentiment, sentiment_score=score, emotion="none",
        kb_ids=kb, kb_answered=bool(kb),
        actions=tuple(ActionView(type=a, id=f"{tid}:{a}:{i}", sku="SKU-1" if a == "cross_sell" else None)
                      for i, a in enumerate(actions)),
        timings_ms={"embed": total_ms * 0.7, "intent": 0.2, "retrieve": 1.0, "policy": 0.5, "total": total_ms},
    )


def aturn(cid: str, tid: str, *, gold_qa: list[str] | None = None, flags: tuple[str, ...] = (),
          text: str = "亲") -> TurnResult:
    return TurnResult(
        conversation_id=cid, turn_id=tid, role="agent", text=text,
        gold=Gold(qa=gold_qa) if gold_qa is not None else None,
        actions=tuple(ActionView(type="qa_alert", id=f"{tid}:qa_alert:{i}", code=f) for i, f in enumerate(flags)),
        timings_ms={"qa": 0.3},
    )


def conv(cid: str, *turns: TurnResult, line: int = 1, error: str | None = None) -> ConversationResult:
    return ConversationResult(cid, line, tuple(turns), error=error)


def sample() -> list[ConversationResult]:
    """Two small conversations with known scores (worked out in test_metrics)."""
    return [
        conv("c1",
             cturn("c1", "t1", gold={"intent": "logistics", "sentiment": "negative", "kb_ids": ["kb-a"],
                                    "actions": ["answer", "recovery"], "cross_sell_ok": False},
                   intent="logistics", sentiment="negative", score=-0.8, kb=("kb-a", "kb-b"),
                   actions=("recovery", "answer", "cross_sell", "care"), text="怎么还不发货"),
             aturn("c1", "t2", gold_qa=["promise_tracked"], flags=("promise_tracked",), text="明天一定发"),
             cturn("c1", "t3", gold={"intent": "greeting_thanks", "sentiment": "positive", "cross_sell_ok": True},
                   intent="greeting_thanks", sentiment="neutral", score=0.1, actions=("care",), text="好的谢谢"),
             line=1),
        conv("c2",
             cturn("c2", "t1", gold={"intent": "refund", "sentiment": "neutral", "kb_ids": ["kb-c", "kb-d"],
                                    "actions": ["answer"]},
                   intent="return_exchange", sentiment="neutral", score=0.0, kb=("kb-x", "kb-d", "kb-c"),
                   actions=("answer", "clarify")),
             aturn("c2", "t2", gold_qa=[], flags=("superlative",)),
             aturn("c2", "t3", gold_qa=["rude"], flags=()),
             cturn("c2", "t4", gold={"intent": "usage_howto", "kb_ids": ["kb-z"], "cross_sell_ok": True},
                   intent="usage_howto", sentiment="positive", score=0.6, kb=("kb-q",),
                   actions=("answer", "cross_sell")),
             line=2),
    ]


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = "/usr/bin/chromium"
CHARTS = ("intent-confusion", "intent-f1", "sentiment-trend", "sentiment-confusion", "action-recall",
          "latency-histogram")


def _browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    return sync_api.sync_playwright()


def check_report_in_browser(html_path: Path, charts: tuple[str, ...] = CHARTS) -> dict[str, object]:
    """Open ``html_path`` in Chromium and return what was found; shared with the end-to-end tests."""
    requests: list[str] = []
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html_path.resolve().as_uri())
            found = {}
            for chart in charts:
                svg = page.locator(f'svg[data-chart="{chart}"]')
                assert svg.count() == 1, f"chart {chart} missing"
                box = svg.bounding_box()
                marks = svg.locator("rect, polyline, circle, line").count()
                found[chart] = {"width": box["width"] if box else 0, "height": box["height"] if box else 0,
                                "marks": marks}
            rows = page.locator("#errors tbody tr")
            total = rows.count()
            page.fill("#err-q", "zzzz-no-such-text")
            hidden_all = page.locator("#errors tbody tr:visible").count()
            page.fill("#err-q", "")
            return {"charts": found, "requests": requests, "errors": errors, "rows": total,
                    "visible_after_filter": hidden_all}
        finally:
            browser.close()
