"""Every bad input gets a 4xx with a code, and the keep-alive connection stays usable.

Each case was a 500 (or a silent accept) at an older commit; they run against a real server on a
real socket, because a 500 there also dropped the connection and failed the client's next request.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from assist import limits

SURROGATE = "\ud800"
EDGE_DATES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
              10**20, -(10**12)]


def _raw(obj: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, exactly what a hostile client sends.
    return json.dumps(obj).encode()


def _still_usable(http: httpx.Client) -> None:
    r = http.get("/v1/conversations/none-such/frames")
    assert r.status_code == 404 and r.json()["code"] == "conversation.not_found", r.text


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status and r.json()["code"] == code, r.text


def _conversation(http: httpx.Client, cid: str) -> None:
    r = http.post(f"/v1/conversations/{cid}/turns", json={"turn_id": "seed", "role": "agent", "text": "您好"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/conversations/bad-1/feedback", {"suggestion_id": "s", "outcome": "edited",
                                                 "edited_text": f"改成{SURROGATE}"}),
    ("PUT", "/v1/customers/u-bad", {"tier": SURROGATE}),
    ("PUT", "/v1/customers/u-bad", {"orders": [{"order_id": "o1", "sku": "s", "tracking_no": SURROGATE}]}),
    ("POST", "/v1/orders/events", {"customer_id": "u-bad", "order_id": "o1", "type": "shipped",
                                   "ts": "2024-11-20T10:00:00Z", "detail": SURROGATE}),
    ("POST", "/v1/conversations/bad-1/turns", {"turn_id": "t-s", "role": "customer", "text": SURROGATE}),
    ("POST", "/v1/analyze", {"text": SURROGATE}),
    ("POST", "/v1/kb/entries", {"id": "k-s", "question": "q", "answer": "a", "similar": [SURROGATE]}),
])
def test_a_lone_surrogate_is_refused_with_422(http: httpx.Client, method: str, path: str, body: Any) -> None:
    _refused(http.request(method, path, content=_raw(body), headers={"content-type": "application/json"}),
             422, "invalid")
    _still_usable(http)


@pytest.mark.parametrize("ts", EDGE_DATES)
def test_dates_outside_the_sane_range_are_refused(http: httpx.Client, ts: Any) -> None:
    _conversation(http, "dates-1")
    turn = {"turn_id": f"t-{ts}", "role": "customer", "text": "到哪了", "ts": ts}
    _refused(http.post("/v1/conversations/dates-1/turns", json=turn), 422, "invalid")
    event = {"customer_id": "u-dates", "order_id": "o1", "type": "delayed", "ts": ts}
    _refused(http.post("/v1/orders/events", json=event), 422, "invalid")
    profile = {"orders": [{"order_id": "o1", "sku": "s", "paid_at": ts}]}
    _refused(http.put("/v1/customers/u-dates", json=profile), 422, "invalid")
    _refused(http.post("/v1/conversations/dates-1/resolve", json={"ts": ts}), 422, "invalid")
    _still_usable(http)


def test_an_accepted_order_at_the_edge_of_the_range_never_breaks_a_logistics_turn(server: Any) -> None:
    profile = {"id": "u-edge", "orders": [{"order_id": "o-edge", "sku": "s", "status": "shipped",
                                           "paid_at": "2000-01-01T00:00:00Z", "shipped_at": "2099-12-31T23:59:59Z"}]}
    with httpx.Client(base_url=server.url, timeout=60) as http, connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "hello", "conversation_id": "edge-1", "customer": profile}))
        assert json.loads(ws.recv(timeout=30))["ref"] == "hello"
        event = {"customer_id": "u-edge", "order_id": "o-edge", "type": "delayed", "ts": "2099-12-31T23:59:59Z"}
        assert http.post("/v1/orders/events", json=event).status_code == 200
        r = http.post("/v1/conversations/edge-1/turns", json={"turn_id": "t1", "role": "customer",
                                                              "text": "我的快递到哪了，怎么还没到"})
        assert r.status_code == 200, r.text
        assert http.get("/v1/conversations/edge-1").json()["turns"][-1]["status"] == "processed"


@pytest.mark.parametrize("after", [2**63, 2**64, -1])
def test_seq_out_of_range_is_refused(http: httpx.Client, after: int) -> None:
    _conversation(http, "seq-1")
    _refused(http.get("/v1/conversations/seq-1/frames", params={"after": after}), 422, "invalid")
    _still_usable(http)


def test_deep_json_is_refused_in_a_replay_upload_and_in_any_body(http: httpx.Client) -> None:
    deep = b'{"conversation_id": "c", "turns": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    r = http.post("/v1/replay", content=deep, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["code"] == "replay.invalid", r.text
    assert "nested too deeply" in json.dumps(r.json()["details"])
    r = http.post("/v1/analyze", content=b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                  headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    _still_usable(http)


@pytest.mark.parametrize("qty", ["NaN", "Infinity", "-1", "0", str(limits.QTY_MAX + 1)])
def test_nan_and_negative_quantities_are_refused(http: httpx.Client, qty: str) -> None:
    body = b'{"orders": [{"order_id": "o1", "sku": "s", "qty": ' + qty.encode() + b"}]}"
    _refused(http.put("/v1/customers/u-qty", content=body, headers={"content-type": "application/json"}),
             422, "invalid")
    _still_usable(http)


def test_size_limits_give_413_for_the_body_and_422_for_a_field(http: httpx.Client) -> None:
    _refused(http.put("/v1/customers/u-big", json={"tier": "x" * (11 << 20)}), 413, "request.too_large")
    _still_usable(http)
    _refused(http.put("/v1/customers/u-big", json={"tier": "x" * (limits.LABEL_MAX + 1)}), 422, "input.too_long")
    feedback = {"suggestion_id": "s", "outcome": "edited", "edited_text": "改" * (limits.NOTE_MAX + 1)}
    _refused(http.post("/v1/conversations/x/feedback", json=feedback), 422, "input.too_long")
    entry = {"id": "k-many", "question": "怎么开发票", "answer": "在订单页申请",
             "similar": [f"第{i}种问法" for i in range(300)]}
    _refused(http.post("/v1/kb/entries", json=entry), 422, "input.too_long")
    entry["similar"] = ["长" * (limits.KB_SIMILAR_MAX + 1)]
    _refused(http.post("/v1/kb/entries", json=entry), 422, "input.too_long")
    _still_usable(http)


def test_a_reused_turn_id_with_other_text_is_a_conflict(http: httpx.Client) -> None:
    first = {"turn_id": "t1", "role": "customer", "text": "发票怎么开？"}
    assert http.post("/v1/conversations/reuse-1/turns", json=first).headers["assist-duplicate"] == "false"
    again = http.post("/v1/conversations/reuse-1/turns", json=first)
    assert again.status_code == 200 and again.headers["assist-duplicate"] == "true"
    _refused(http.post("/v1/conversations/reuse-1/turns", json={**first, "text": "退款多久到账？"}),
             409, "turn.id_conflict")
    _refused(http.post("/v1/conversations/reuse-1/turns", json={**first, "role": "agent"}), 409, "turn.id_conflict")
    turns = http.get("/v1/conversations/reuse-1").json()["turns"]
    assert [t["text"] for t in turns] == ["发票怎么开？"]


def _frames(ws: Any, pred: Any, limit: int = 20) -> dict[str, Any]:
    for _ in range(limit):
        frame = json.loads(ws.recv(timeout=30))
        if pred(frame):
            return frame
    raise AssertionError("no matching frame")


def test_ws_conflicts_mismatches_and_bad_seqs_get_error_frames(server: Any) -> None:
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "hello", "conversation_id": "ws-bad-1"}))
        assert json.loads(ws.recv(timeout=30))["ref"] == "hello"
        ws.send(json.dumps({"type": "turn", "turn_id": "w1", "role": "customer", "text": "在吗"}))
        _frames(ws, lambda f: f["type"] == "analysis")
        ws.send(json.dumps({"type": "turn", "turn_id": "w1", "role": "customer", "text": "不在"}))
        err = _frames(ws, lambda f: f["type"] == "error")
        assert (err["code"], err["turn_id"]) == ("turn.id_conflict", "w1")
        ws.send(json.dumps({"type": "turn", "conversation_id": "someone-else", "turn_id": "w2", "role": "customer",
                            "text": "在吗"}))
        err = _frames(ws, lambda f: f["type"] == "error")
        assert (err["code"], err["ref"]) == ("ws.conversation_mismatch", "turn")
        for last_seq in (2**63, -1):
            ws.send(json.dumps({"type": "resume", "last_seq": last_seq}))
            assert _frames(ws, lambda f: f["type"] == "error")["code"] == "ws.bad_frame"
        ws.send(json.dumps({"type": "ping", "nonce": "x" * (limits.WS_FRAME_MAX_BYTES + 1)}))
        assert _frames(ws, lambda f: f["type"] == "error")["code"] == "ws.frame_too_large"
        ws.send(json.dumps({"type": "ping", "nonce": 1}))
        assert _frames(ws, lambda f: True)["type"] == "pong"
        assert http_turns(server, "ws-bad-1") == ["在吗"]


def http_turns(server: Any, cid: str) -> list[str]:
    return [t["text"] for t in httpx.get(f"{server.url}/v1/conversations/{cid}", timeout=30).json()["turns"]]


def test_a_client_that_reads_while_pipelining_300_pings_is_not_closed(server: Any) -> None:
    with connect(server.ws_url) as ws:
        for i in range(300):
            ws.send(json.dumps({"type": "ping", "nonce": i}))
        nonces = [json.loads(ws.recv(timeout=30))["nonce"] for _ in range(300)]
        assert nonces == list(range(300))
        ws.send(json.dumps({"type": "ping", "nonce": "after"}))
        assert json.loads(ws.recv(timeout=30))["nonce"] == "after"
