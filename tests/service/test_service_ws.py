"""WebSocket protocol v1 end to end through the real app, pipeline and SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_build import hello, make_settings, recv, recv_until, serve, turn
from starlette.testclient import TestClient

from assist.settings import Settings


def test_hello_turn_ack_analysis(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ack = hello(ws, "ws-basic")
        assert ack == {**ack, "v": 1, "seq": None, "conversation_id": "ws-basic", "last_seq": 0}
        t_ack, analysis = turn(ws, "t1", "纸尿裤尺码怎么选？宝宝12斤")
        assert t_ack["v"] == 1 and t_ack["ref"] == "turn" and t_ack["seq"] == 1 and not t_ack["duplicate"]
        assert analysis["v"] == 1 and analysis["seq"] == 2 and analysis["role"] == "customer"
        assert analysis["intent"]["label"] == "presale_product"
        assert analysis["sentiment"]["label"] in ("neutral", "positive", "negative")
        assert analysis["kb"]["hits"] and analysis["kb"]["hits"][0]["kb_id"].startswith("mb-diaper")
        assert analysis["state"]["conversation_id"] == "ws-basic" and analysis["state"]["customer_turns"] == 1
        assert analysis["actions"] and analysis["actions"][0]["id"]
        for stage in ("normalise", "tokenise", "embed", "intent", "sentiment", "retrieve", "policy", "total"):
            assert stage in analysis["timings_ms"], stage

        # Agent turns get the quality check instead of the pipeline.
        _, agent = turn(ws, "t2", "亲，我们保证明天一定发货，这是全网最好的纸尿裤", role="agent")
        assert agent["role"] == "agent" and agent["intent"] is None and agent["kb"] is None
        assert agent["actions"] and {a["type"] for a in agent["actions"]} == {"qa_alert"}


def test_ping_pong(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "ping", "v": 1, "nonce": "n1"})  # allowed before hello
        pong = recv(ws)
        assert pong["type"] == "pong" and pong["nonce"] == "n1" and pong["seq"] is None and pong["v"] == 1


def test_turns_sent_back_to_back_are_processed_in_order(client: TestClient) -> None:
    texts = ["在吗", "我想问下纸尿裤怎么选尺码", "宝宝现在20斤", "晚上老是侧漏", "还有拉拉裤和纸尿裤有什么区别"]
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "ws-order")
        for i, text in enumerate(texts, 1):
            ws.send_json({"type": "turn", "v": 1, "turn_id": f"o{i}", "role": "customer", "text": text})
        frames = recv_until(ws, lambda f: f["type"] == "analysis" and f["turn_id"] == f"o{len(texts)}")
    acks = [f["turn_id"] for f in frames if f["type"] == "ack"]
    analyses = [f for f in frames if f["type"] == "analysis"]
    assert acks == [f"o{i}" for i in range(1, len(texts) + 1)]
    assert [a["turn_id"] for a in analyses] == acks
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] == 1
    # Each analysis saw the state left by the one before it.
    assert [a["state"]["customer_turns"] for a in analyses] == list(range(1, len(texts) + 1))


def test_repeated_turn_id_is_not_reprocessed(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "ws-dup")
        _, first = turn(ws, "d1", "什么时候发货")
        ws.send_json({"type": "turn", "v": 1, "turn_id": "d1", "role": "customer", "text": "什么时候发货"})
        dup_ack = recv(ws)
        again = recv(ws)
        assert dup_ack["type"] == "ack" and dup_ack["duplicate"] is True and dup_ack["seq"] is None
        assert again == first  # the stored frame, same seq, not a new analysis
        # The conversation moved on by exactly one turn.
        _, nxt = turn(ws, "d2", "好的")
        assert nxt["state"]["customer_turns"] == 2 and nxt["seq"] == first["seq"] + 2
    transcript = client.get("/v1/conversations/ws-dup").json()
    assert [t["turn_id"] for t in transcript["turns"]] == ["d1", "d2"]


def test_resume_after_reconnect_replays_every_frame(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "ws-resume")
        seen = []
        for i, text in enumerate(["纸尿裤晚上漏尿怎么办", "试过大一码了", "好的我再试试"], 1):
            a, b = turn(ws, f"r{i}", text)
            seen += [a, b]
    assert [f["seq"] for f in seen] == list(range(1, 7))

    with client.websocket_connect("/v1/ws") as ws:
        ack = hello(ws, "ws-resume")
        assert ack["last_seq"] == 6
        ws.send_json({"type": "resume", "v": 1, "last_seq": 2})
        replayed = [recv(ws) for _ in range(4)]
        assert replayed == seen[2:]
        # Live frames continue after the replay without a gap.
        a, b = turn(ws, "r4", "谢谢")
        assert (a["seq"], b["seq"]) == (7, 8)
        ws.send_json({"type": "resume", "v": 1, "last_seq": 0})
        assert [recv(ws)["seq"] for _ in range(8)] == list(range(1, 9))


def test_two_consoles_on_one_conversation_see_the_same_frames(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as agent_ws, client.websocket_connect("/v1/ws") as watcher:
        hello(agent_ws, "ws-two")
        hello(watcher, "ws-two")
        a, b = turn(agent_ws, "w1", "发票怎么开")
        assert recv(watcher) == a and recv(watcher) == b


def _error(ws: Any, payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        ws.send_text(payload)
    else:
        ws.send_json(payload)
    frame = recv(ws)
    assert frame["type"] == "error" and frame["v"] == 1 and frame["seq"] is None, frame
    return frame


def _still_usable(ws: Any) -> None:
    ws.send_json({"type": "ping", "v": 1})
    assert recv(ws)["type"] == "pong"


def test_every_error_code_and_the_connection_stays_usable(client: TestClient, settings: Settings) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        # Before hello.
        assert _error(ws, {"type": "turn", "turn_id": "x", "role": "customer", "text": "hi"})["code"] == "ws.state"
        assert _error(ws, {"type": "resume", "last_seq": 0})["code"] == "ws.state"
        assert _error(ws, {"type": "hello", "conversation_id": "never-seen", "create": False})["code"] == \
            "conversation.not_found"
        _still_usable(ws)
        hello(ws, "ws-errors")
        assert _error(ws, "{not json")["code"] == "ws.bad_frame"
        assert _error(ws, "[]")["code"] == "ws.bad_frame"
        assert _error(ws, {"type": "subscribe"})["code"] == "ws.unknown_type"
        missing = _error(ws, {"type": "turn", "role": "customer", "text": "hi"})
        assert missing["code"] == "ws.bad_frame" and "turn_id" in missing["message"] and missing["ref"] == "turn"
        assert _error(ws, {"type": "turn", "turn_id": "x", "role": "robot", "text": "hi"})["code"] == "ws.bad_frame"
        assert _error(ws, {"type": "ping", "v": 2})["code"] == "ws.bad_frame"
        long = _error(ws, {"type": "turn", "turn_id": "big", "role": "customer",
                           "text": "好" * (settings.max_text_chars + 1)})
        assert long["code"] == "turn.text_too_long" and long["turn_id"] == "big"
        assert _error(ws, {"type": "hello", "conversation_id": "other"})["code"] == "ws.state"
        assert _error(ws, {"type": "feedback", "suggestion_id": "nope", "outcome": "accepted"})["code"] == \
            "suggestion.not_found"
        _still_usable(ws)
        # A valid turn after all that is processed normally, and nothing above was stored.
        ack, analysis = turn(ws, "ok1", "你好")
        assert ack["seq"] == 1 and analysis["seq"] == 2
    metrics = client.get("/metrics").text
    assert 'assist_errors_total{code="ws.bad_frame"}' in metrics


def test_token_is_required_when_configured(tmp_path: Path, runtime: Any) -> None:
    with serve(make_settings(tmp_path / "a.db", api_token="s3cret"), runtime) as client:
        with client.websocket_connect("/v1/ws") as ws:
            assert _error(ws, {"type": "hello", "conversation_id": "c"})["code"] == "auth.missing"
            assert _error(ws, {"type": "hello", "conversation_id": "c", "token": "wrong"})["code"] == \
                "auth.invalid"
            hello(ws, "c", token="s3cret")
        with client.websocket_connect("/v1/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
            hello(ws, "c")


def test_overdue_promise_is_pushed_by_the_sweep(client: TestClient) -> None:
    from datetime import UTC, datetime, timedelta

    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "ws-promise")
        turn(ws, "p1", "我的订单什么时候发货")
        _, agent = turn(ws, "p2", "亲，明天一定给您发货", role="agent")
        assert agent["state"]["open_promises"], agent["actions"]
        service = client.app.state.services.conversations  # type: ignore[attr-defined]
        assert client.portal.call(service.sweep, datetime.now(UTC)) == 0  # not due yet
        assert client.portal.call(service.sweep, datetime.now(UTC) + timedelta(days=3)) == 1
        event = recv(ws)
        assert event["type"] == "event" and event["event"] == "promise.overdue"
        assert [a["type"] for a in event["actions"]] == ["qa_alert"]
        assert event["state"]["open_promises"][0]["status"] == "overdue"
