"""The agent console in headless Chromium against a real assist server (real models, real SQLite).

Each test drives the page the way an agent (or a demo) does, and some drive the conversation from
a Python WebSocket client at the same time, the way another console would. Screenshots are saved
to var/artifacts/console/. Every wait is for something to appear, never for an amount of time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from assist.settings import Settings
from conftest import Server, screenshot

pytestmark = pytest.mark.browser

RASH_CREAM = "MB-RC-001"


def open_console(page: Any, server: Server, query: str = "") -> None:
    page.goto(f"{server.url}/console{query}")
    page.wait_for_selector('#conn[data-state="open"]')


def say(page: Any, role: str, text: str) -> None:
    """Type ``text`` as ``role`` and press Enter; return when its analysis is on the page."""
    before = page.evaluate("assistConsole.conversation.view().turns.length")
    page.check(f'input[name=role][value={role}]')
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(
        "n => { const t = assistConsole.conversation.view().turns; return t.length === n && t.every(x => x.analysis) }",
        arg=before + 1)


def card_types(page: Any) -> list[str]:
    return page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.actionType)")


def transcript(server: Server, conversation_id: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/v1/conversations/{conversation_id}").json()


def conversation_id(page: Any) -> str:
    return page.evaluate("assistConsole.conversation.id")


@contextlib.contextmanager
def driver(server: Server, cid: str, **hello: Any) -> Iterator[Driver]:
    """Another console: a Python WebSocket client on the same conversation."""
    with connect(server.ws_url) as ws:
        d = Driver(ws)
        d.send({"type": "hello", "conversation_id": cid, **hello})
        assert d.recv()["ref"] == "hello"
        yield d


class Driver:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"v": 1, **frame}))

    def recv(self) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=20))

    def turn(self, turn_id: str, text: str, role: str = "customer") -> dict[str, Any]:
        """Send a turn and wait for its analysis."""
        self.send({"type": "turn", "turn_id": turn_id, "role": role, "text": text})
        while True:
            f = self.recv()
            if f["type"] == "analysis" and f["turn_id"] == turn_id:
                return f


def test_diaper_conversation_answer_then_cross_sell(page: Any, server: Server) -> None:
    open_console(page, server)
    say(page, "customer", "宝宝屁股红红的用什么好")
    assert card_types(page)[0] == "answer"
    answer = page.locator('.card[data-action-type="answer"]').first
    assert answer.locator("a.kb-link").get_attribute("data-kb-id") == "mb-diaper-rash-red-bottom"
    assert page.locator("#intent").count() == 1 and page.locator("#sentiment").count() == 1
    screenshot(page, "diaper-1-answer")

    # use: the script goes into the input for editing; sending it unchanged reports "accepted".
    script = answer.locator(".script").inner_text()
    answer.locator("button.use").click()
    assert page.input_value("#input") == script
    page.press("#input", "Enter")
    page.wait_for_selector('.card[data-action-type="answer"][data-status="accepted"]')
    screenshot(page, "diaper-1-answer-used")

    say(page, "customer", "好的谢谢，解决了")
    cross = page.locator(f'.card[data-action-type="cross_sell"]:has-text("{RASH_CREAM}")')
    assert cross.count() == 1 and "护臀霜" in cross.inner_text()
    assert "cross_sell" == card_types(page)[0]
    screenshot(page, "diaper-2-cross-sell")
    page.set_viewport_size({"width": 1920, "height": 1080})
    screenshot(page, "diaper-2-cross-sell-1920")
    page.set_viewport_size({"width": 1280, "height": 800})

    # dismiss: feedback over the WebSocket, and the card does not come back.
    cross_id = cross.get_attribute("data-action-id")
    cross.locator("button.dismiss").click()
    page.wait_for_selector(f'.card[data-action-id="{cross_id}"]', state="detached")
    page.wait_for_function("id => assistConsole.conversation.view().state.suggestions[id].status === 'dismissed'",
                           arg=cross_id)
    feedback = {f["suggestion_id"]: f for f in transcript(server, conversation_id(page))["feedback"]}
    assert feedback[cross_id]["outcome"] == "dismissed"
    assert any(f["outcome"] == "accepted" for f in feedback.values()), feedback  # the used answer
    say(page, "customer", "对了，宝宝屁股还是有点红，护臀霜要涂多厚")
    assert page.locator(f'.card:has-text("{RASH_CREAM}")').count() == 0
    assert page.log.errors == [] and page.log.foreign == []


def test_angry_turn_escalates_and_offers_no_cross_sell(page: Any, server: Server) -> None:
    open_console(page, server)
    say(page, "customer", "你们这什么破纸尿裤！宝宝屁股都红了，气死我了！我要投诉")
    types = card_types(page)
    assert "escalate" in types and "cross_sell" not in types, types
    assert page.get_attribute("#sentiment", "data-label") == "negative"
    screenshot(page, "angry-escalate")
    # Top-card shortcut: Alt+1 puts the first card's script into the input.
    first = page.locator(".card").first.locator(".script").inner_text()
    page.focus("#input")
    page.keyboard.press("Alt+1")
    assert page.input_value("#input") == first
    # Tab goes from the input to the first card (one stop per card); Enter on it uses it too.
    page.fill("#input", "")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.actionType") == types[0]
    page.keyboard.press("Enter")
    assert page.input_value("#input") == first
    assert page.evaluate("document.activeElement.id") == "input"


def test_forbidden_promise_is_underlined_before_sending(page: Any, server: Server) -> None:
    open_console(page, server)
    page.check("input[name=role][value=agent]")
    page.fill("#input", "亲，这款绝对不会漏，我保证您用了满意")
    mark = page.locator('#backdrop mark.qa-mark[data-code="forbidden_promise"]')
    mark.first.wait_for()
    assert {m.inner_text() for m in mark.all()} >= {"保证"}
    assert page.locator('#qa-flags li[data-code="forbidden_promise"]').count() == 1
    screenshot(page, "draft-forbidden-promise")
    # Nothing was sent: a draft is not a turn, and the service stored nothing for it.
    assert transcript(server, conversation_id(page))["turns"] == []
    page.fill("#input", "亲，这款口碑不错，很多顾客反馈不漏")
    page.wait_for_selector("#backdrop mark", state="detached")
    assert page.locator("#qa-flags li").count() == 0


def test_killed_socket_reconnects_and_loses_no_frame(page: Any, server: Server) -> None:
    with driver(server, "console-kill") as other:
        other.turn("c1", "宝宝屁股红红的用什么好")
        open_console(page, server, "?conversation=console-kill")
        page.wait_for_selector('li[data-turn-id="c1"] .chip')

        # Kill the socket and keep the page off the network while the conversation goes on.
        page.context.set_offline(True)
        page.evaluate("assistConsole.connection.kill()")
        page.wait_for_selector('#conn[data-state="reconnecting"]')
        other.turn("a1", "亲，换尿布时薄涂一层护臀霜就好", role="agent")
        other.turn("c2", "好的谢谢，解决了")
        page.context.set_offline(False)

        page.wait_for_selector('li[data-turn-id="c2"] .chip')
        page.wait_for_selector('#conn[data-state="open"]')
        stored = httpx.get(f"{server.url}/v1/conversations/console-kill/frames").json()["frames"]
        seqs = page.evaluate("[...assistConsole.connection.seqs].sort((a, b) => a - b)")
        assert seqs == [f["seq"] for f in stored] == list(range(1, len(stored) + 1))
        assert page.evaluate("assistConsole.connection.connects") >= 2
        assert page.eval_on_selector_all(".msg", "els => els.map(e => e.dataset.turnId)") == ["c1", "a1", "c2"]
        assert page.inner_text('li[data-turn-id="a1"] .bubble') == "亲，换尿布时薄涂一层护臀霜就好"
        screenshot(page, "reconnect-after-kill")
        # Chromium logs each reconnect attempt made while offline; nothing else may go wrong.
        assert [e for e in page.log.errors if "ERR_INTERNET_DISCONNECTED" not in e] == []


def test_listen_in_shows_a_python_driven_conversation_live(page: Any, server: Server) -> None:
    with driver(server, "console-live", customer={"id": "u-live", "tier": "vip"}) as other:
        other.turn("c1", "宝宝屁股红红的用什么好")
        open_console(page, server, "?conversation=console-live&readonly=1")
        assert page.locator("#composer").is_hidden()
        page.wait_for_selector('.card[data-action-type="answer"]')
        assert page.locator(".card button").count() == 0  # readonly: no use / dismiss

        other.turn("a1", "亲，我保证明天一定给您发货", role="agent")
        page.wait_for_selector('li[data-turn-id="a1"] mark.qa-mark[data-code="forbidden_promise"]')
        other.turn("c2", "怎么还没发货？！气死我了，我要投诉你们")
        page.wait_for_selector('.card[data-action-type="escalate"]')
        assert page.inner_text('li[data-turn-id="c2"] .bubble') == "怎么还没发货？！气死我了，我要投诉你们"
        screenshot(page, "listen-in-readonly")

        # The panel alone (for an iframe beside a shop's own chat) shows the same cards.
        page.set_viewport_size({"width": 440, "height": 720})  # the size of an iframe beside a chat
        page.goto(f"{server.url}/console/panel?conversation=console-live")
        page.wait_for_selector('.card[data-action-type="escalate"]')
        assert page.locator("#messages").is_hidden() and page.locator("#composer").is_hidden()
        screenshot(page, "panel-alone")
        assert page.log.errors == [] and page.log.foreign == []


def test_a_crm_delay_brings_recovery_and_care_cards_live(page: Any, server: Server) -> None:
    paid = (datetime.now(UTC) - timedelta(days=4)).isoformat()
    profile = {"id": "u-delay", "tier": "vip", "orders": [
        {"order_id": "o-delay", "sku": "HA-WH-001", "status": "paid", "paid_at": paid}]}
    with driver(server, "console-delay", customer=profile) as other:
        other.turn("c1", "我的热水器付款四天了怎么还没发货？")
        open_console(page, server, "?conversation=console-delay")
        page.wait_for_selector('.card[data-action-type="answer"]')
        event = {"customer_id": "u-delay", "order_id": "o-delay", "type": "delayed",
                 "ts": datetime.now(UTC).isoformat()}
        httpx.post(f"{server.url}/v1/orders/events", json=event).raise_for_status()
        page.wait_for_selector('.system[data-event="order.delayed"]')
        page.wait_for_selector('.card[data-action-type="care"]')
        recovery = page.locator('.card[data-action-type="recovery"]')
        assert recovery.count() == 1 and "VIP" in recovery.inner_text(), card_types(page)
        screenshot(page, "crm-delay-recovery-care")


def test_docs_load_nothing_from_elsewhere(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "assist" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag")  # the operations are listed
    assert page.log.foreign == [] and page.log.errors == []


def test_token_is_asked_once_and_kept_out_of_the_url(browser: Any, runtime: Any, tmp_path: Path) -> None:
    settings = Settings(env="test", database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}", api_token="s3cret")
    with Server(settings, runtime) as secured:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.goto(f"{secured.url}/console")
            page.wait_for_selector("#token-dialog[open]")
            screenshot(page, "token-prompt")
            page.fill("#token-input", "s3cret")
            page.press("#token-input", "Enter")
            page.wait_for_selector('#conn[data-state="open"]')
            assert page.evaluate("sessionStorage.getItem('assist.token')") == "s3cret"
            page.fill("#kb-q", "充电宝能带上飞机吗")  # REST with the same token
            page.wait_for_selector(".kb-results .hit")
            page.reload()
            page.wait_for_selector('#conn[data-state="open"]')
            assert page.locator("#token-dialog[open]").count() == 0  # asked once per tab
            assert "s3cret" not in page.url
        finally:
            context.close()
