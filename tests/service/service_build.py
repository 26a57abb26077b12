"""Helpers for the service tests: settings, a served app, and WebSocket frame reading with deadlines."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from starlette.testclient import TestClient, WebSocketTestSession

from assist.service.app import create_app
from assist.settings import Settings


def make_settings(db: Path, **overrides: Any) -> Settings:
    return Settings(env="test", database_url=f"sqlite+aiosqlite:///{db}", **overrides)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return
        assert r.json()["code"] == "service.not_ready", r.text
        assert "failed" not in r.json()["message"], r.text
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').text}")


@contextlib.contextmanager
def serve(settings: Settings, runtime: Any) -> Iterator[TestClient]:
    """A ready app on ``settings`` sharing the loaded ``runtime``, lifespan included."""
    app = create_app(settings, runtime=runtime)
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def recv(ws: WebSocketTestSession, timeout: float = 20.0) -> dict[str, Any]:
    """Next frame from the server, failing instead of hanging when none comes.

    TestClient's ``receive_json`` blocks forever; this reads the same stream with a deadline.
    """

    async def receive() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(receive)
    if message["type"] == "websocket.close":
        raise AssertionError(f"server closed the WebSocket: {message}")
    return json.loads(message["text"])


def recv_until(ws: WebSocketTestSession, pred: Callable[[dict[str, Any]], bool], *, limit: int = 50,
               timeout: float = 20.0) -> list[dict[str, Any]]:
    """Frames up to and including the first one matching ``pred``."""
    out = []
    for _ in range(limit):
        frame = recv(ws, timeout)
        out.append(frame)
        if pred(frame):
            return out
    raise AssertionError(f"no matching frame in {limit}: {out}")


def hello(ws: WebSocketTestSession, conversation_id: str, **fields: Any) -> dict[str, Any]:
    ws.send_json({"type": "hello", "v": 1, "conversation_id": conversation_id, **fields})
    ack = recv(ws)
    assert ack["type"] == "ack" and ack["ref"] == "hello", ack
    return ack


def turn(ws: WebSocketTestSession, turn_id: str, text: str, role: str = "customer") -> tuple[dict[str, Any],
                                                                                              dict[str, Any]]:
    """Send a turn; return its ack and analysis frames."""
    ws.send_json({"type": "turn", "v": 1, "turn_id": turn_id, "role": role, "text": text})
    frames = recv_until(ws, lambda f: f["type"] == "analysis" and f["turn_id"] == turn_id)
    acks = [f for f in frames if f["type"] == "ack" and f.get("turn_id") == turn_id]
    assert acks, frames
    return acks[0], frames[-1]


def action_types(frame: dict[str, Any]) -> list[str]:
    return [a["type"] for a in frame["actions"]]
