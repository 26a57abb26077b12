"""The ``draft`` client frame and its ``qa`` answer, on the real app and the real policy (no browser).

QA before send: the console sends what the agent is typing and underlines what comes back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from assist.service.app import create_app
from assist.settings import Settings


@pytest.fixture
def client(tmp_path: Path, runtime: Any) -> Iterator[TestClient]:
    settings = Settings(env="test", database_url=f"sqlite+aiosqlite:///{tmp_path / 'assist.db'}")
    with TestClient(create_app(settings, runtime=runtime)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").text
            time.sleep(0.02)
        yield c


def _hello(ws: Any, cid: str) -> None:
    ws.send_json({"v": 1, "type": "hello", "conversation_id": cid})
    assert ws.receive_json()["ref"] == "hello"


def test_draft_is_answered_with_flags_and_spans_and_not_stored(client: TestClient) -> None:
    text = "亲，我保证这是全网最好的，电话13812345678"
    with client.websocket_connect("/v1/ws") as ws:
        _hello(ws, "draft-1")
        ws.send_json({"v": 1, "type": "draft", "text": text, "draft_id": 7})
        qa = ws.receive_json()
    assert qa["type"] == "qa" and qa["seq"] is None and qa["draft_id"] == 7
    flags = {f["code"]: f for f in qa["flags"]}
    assert {"forbidden_promise", "superlative", "personal_data"} <= set(flags), qa
    (promise,) = flags["forbidden_promise"]["spans"]
    assert text[promise["start"]:promise["end"]] == promise["text"] == "保证"
    assert flags["forbidden_promise"]["reason"] and flags["forbidden_promise"]["hint"]
    phone = flags["personal_data"]["spans"][0]
    assert text[phone["start"]:phone["end"]] == "13812345678" and phone["text"] != "13812345678"  # masked
    assert qa["flags"][0]["code"] == "personal_data"  # most serious first
    # Nothing was stored: no turn, no frame, no state change.
    assert client.get("/v1/conversations/draft-1/frames").json()["frames"] == []
    assert client.get("/v1/conversations/draft-1").json()["turns"] == []


def test_clean_and_empty_drafts_have_no_flags(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        _hello(ws, "draft-2")
        for text in ("亲，这款口碑不错，很多宝妈回购", ""):
            ws.send_json({"v": 1, "type": "draft", "text": text})
            assert ws.receive_json()["flags"] == []


def test_draft_errors(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"v": 1, "type": "draft", "text": "保证"})
        assert ws.receive_json()["code"] == "ws.state"  # before hello
        _hello(ws, "draft-3")
        ws.send_json({"v": 1, "type": "draft", "text": "长" * 2001})
        err = ws.receive_json()
        assert (err["code"], err["ref"]) == ("turn.text_too_long", "draft")
        ws.send_json({"v": 1, "type": "draft"})
        assert ws.receive_json()["code"] == "ws.bad_frame"
        ws.send_json({"v": 1, "type": "ping", "nonce": 1})
        assert ws.receive_json()["type"] == "pong"  # still usable
