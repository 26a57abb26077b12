"""WebSocket fuzz: whatever a client sends, the session answers it and keeps answering pings.

Seeded, so a failure reproduces. Random bytes, binary frames, text that is not JSON, huge and
deeply nested JSON, unknown types, every frame type with fields of random types and sizes, and
frames out of order (a turn before hello, resume with a bad seq, hello twice ...). After every
frame the same connection must still answer a ``ping`` (the handler was not killed and did not
close the socket), and another connection must still be served.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from assist import limits

SEED = 20261204
RANDOM_FRAMES = 1000
TYPES = ["hello", "turn", "feedback", "resolve", "resume", "draft", "ping"]
FIELDS = ["conversation_id", "turn_id", "role", "text", "ts", "suggestion_id", "outcome", "edited_text",
          "last_seq", "draft_id", "nonce", "customer", "create", "token", "v"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(14)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30])
    if pick == 2:
        return rng.choice([0.5, -1e308, 1e308])
    if pick == 3:
        return rng.choice([True, False])
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 40)))
    if pick == 5:
        return "\ud800" + "x" * rng.randrange(3)  # a lone surrogate
    if pick == 6:
        return rng.choice(["customer", "agent", "accepted", "edited", "c-fuzz", "2024-11-20T10:00:00Z",
                           "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"])
    if pick == 7:
        return "长" * rng.choice([limits.ID_MAX + 1, limits.NOTE_MAX + 1, limits.TURN_TEXT_MAX + 1])
    if pick == 8 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 9 and depth < 3:
        return {rng.choice([*FIELDS, "tier", "orders", "id"]): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if pick == 10:
        return rng.randrange(-5, 50)
    return rng.choice(["", " ", "a/b", "t1", "s1"])


def _random_frame(rng: random.Random) -> str | bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))  # binary, mostly not UTF-8
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(0, 60)))  # not JSON
    if kind == 2:
        depth = rng.choice([100, 5_000, 30_000])
        return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"type":"ping","nonce":' + "[" * depth + "]" * depth + "}"
    if kind == 3:
        return json.dumps({"type": "draft", "text": "x" * (limits.WS_FRAME_MAX_BYTES + rng.randrange(1, 5000))})
    if kind == 4:
        return rng.choice(['{"type":"ping","nonce":NaN}', '{"type":"resume","last_seq":Infinity}', "null", "[]",
                           '"turn"', "{}", '{"type":null}', '{"type":"subscribe"}', '{"type":"ping","v":2}'])
    obj: dict[str, Any] = {"type": rng.choice([*TYPES, "unknown", "", "TURN"])}
    for _ in range(rng.randrange(6)):
        obj[rng.choice(FIELDS)] = _value(rng)
    raw = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    # A lone surrogate cannot travel raw in a text frame; escaped (\ud800) it can, and does.
    return raw if limits.is_unicode(raw) else json.dumps(obj)


def _answers_ping(ws: ClientConnection, nonce: int, *, limit: int = 200) -> list[dict[str, Any]]:
    """Send a ping and read up to its pong; every frame on the way must be a well-formed frame."""
    ws.send(json.dumps({"type": "ping", "nonce": nonce}))
    seen = []
    for _ in range(limit):
        frame = json.loads(ws.recv(timeout=60))
        assert frame.get("v") == 1 and isinstance(frame.get("type"), str), frame
        seen.append(frame)
        if frame["type"] == "pong" and frame.get("nonce") == nonce:
            return seen
    raise AssertionError(f"no pong for {nonce} in {limit} frames")


def _out_of_order() -> list[str]:
    turn = {"type": "turn", "turn_id": "o1", "role": "customer", "text": "在吗"}
    return [json.dumps(f) for f in (
        turn, {"type": "resume", "last_seq": 0}, {"type": "feedback", "suggestion_id": "s", "outcome": "accepted"},
        {"type": "resolve"}, {"type": "draft", "text": "亲"},
        {"type": "hello", "conversation_id": "fuzz-ooo"}, {"type": "hello", "conversation_id": "fuzz-other"},
        {"type": "resume", "last_seq": 10**6}, {"type": "resume", "last_seq": -1}, {"type": "resume", "last_seq": 2**63},
        {**turn, "conversation_id": "fuzz-other"}, turn, {**turn, "text": "换了"}, turn,
        {"type": "feedback", "suggestion_id": "no-such", "outcome": "edited", "edited_text": "\ud800"},
        {"type": "resolve", "ts": "0001-01-01T00:00:00Z"}, {"type": "resolve"}, {"type": "resume", "last_seq": 0},
    )]


def _fuzz(server: Any, frames: list[str | bytes], on_each: Callable[[int], None]) -> int:
    with connect(server.ws_url, max_size=None) as ws:
        for i, raw in enumerate(frames):
            ws.send(raw)
            _answers_ping(ws, i)
            on_each(i)
    return len(frames)


def test_the_handler_survives_random_malformed_and_out_of_order_frames(server: Any) -> None:
    rng = random.Random(SEED)
    random_frames = [_random_frame(rng) for _ in range(RANDOM_FRAMES)]
    sent = 0

    def others_are_served(i: int) -> None:
        if i % 100 == 99:  # a second console and the REST API are not disturbed meanwhile
            with connect(server.ws_url) as other:
                other.send(json.dumps({"type": "hello", "conversation_id": f"fuzz-bystander-{i}"}))
                assert json.loads(other.recv(timeout=60))["ref"] == "hello"
                _answers_ping(other, -i)
            assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200

    sent += _fuzz(server, _out_of_order(), others_are_served)
    # The random frames also run after a hello, so frames that need an open conversation reach it.
    sent += _fuzz(server, random_frames, others_are_served)
    sent += _fuzz(server, [json.dumps({"type": "hello", "conversation_id": "fuzz-open"}), *random_frames],
                  others_are_served)
    print(f"ws fuzz: {sent} frames sent (seed {SEED})")
    r = httpx.get(f"{server.url}/v1/conversations/fuzz-ooo", timeout=30)
    assert r.status_code == 200 and [t["text"] for t in r.json()["turns"]] == ["在吗"]
