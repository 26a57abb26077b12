"""Protocol v1 frame parsing (pure): every malformed input maps to a typed error with its code."""

from __future__ import annotations

import json

import pytest

from assist.errors import BadFrameError, TextTooLongError, UnknownFrameError
from assist.service.frames import (
    AckFrame,
    HelloFrame,
    PongFrame,
    ResumeFrame,
    TurnFrame,
    parse_client_frame,
    server_frame_adapter,
)


def parse(obj: object, limit: int = 50) -> object:
    raw = obj if isinstance(obj, str) else json.dumps(obj)
    return parse_client_frame(raw, max_text_chars=limit)


def test_valid_frames() -> None:
    assert isinstance(parse({"type": "hello", "v": 1, "conversation_id": "c1"}), HelloFrame)
    t = parse({"type": "turn", "turn_id": "t1", "role": "agent", "text": "您好", "ts": "2024-11-20T10:00:00+08:00"})
    assert isinstance(t, TurnFrame) and t.role == "agent" and t.ts is not None
    assert isinstance(parse({"type": "resume", "last_seq": 3}), ResumeFrame)
    # unknown fields are ignored (forward compatible within v1)
    assert isinstance(parse({"type": "resume", "last_seq": 0, "extra": 1}), ResumeFrame)


@pytest.mark.parametrize(
    ("raw", "err", "ref"),
    [
        ("{not json", BadFrameError, None),
        ("[1, 2]", BadFrameError, None),
        ({"v": 1}, BadFrameError, None),
        ({"type": "subscribe"}, UnknownFrameError, "subscribe"),
        ({"type": "turn", "role": "customer", "text": "x"}, BadFrameError, "turn"),
        ({"type": "turn", "turn_id": "t", "role": "bot", "text": "x"}, BadFrameError, "turn"),
        ({"type": "turn", "turn_id": "t", "role": "customer", "text": ""}, BadFrameError, "turn"),
        ({"type": "turn", "turn_id": "t", "role": "customer", "text": "长" * 51}, TextTooLongError, "turn"),
        ({"type": "resume", "last_seq": -1}, BadFrameError, "resume"),
        ({"type": "feedback", "suggestion_id": "s", "outcome": "liked"}, BadFrameError, "feedback"),
        ({"type": "ping", "v": 2}, BadFrameError, "ping"),
        ({"type": "hello", "conversation_id": "has space"}, BadFrameError, "hello"),
    ],
)
def test_bad_frames(raw: object, err: type[Exception], ref: str | None) -> None:
    with pytest.raises(err) as info:
        parse(raw)
    assert info.value.details["ref"] == ref  # type: ignore[attr-defined]


def test_server_frames_carry_version() -> None:
    ack = AckFrame(conversation_id="c", ref="turn", turn_id="t", seq=4)
    doc = ack.model_dump(mode="json")
    assert doc["v"] == 1 and doc["type"] == "ack" and doc["seq"] == 4
    assert isinstance(server_frame_adapter.validate_python(doc), AckFrame)
    pong = PongFrame(server_time="2024-01-01T00:00:00Z")  # type: ignore[arg-type]
    assert pong.model_dump(mode="json")["seq"] is None
