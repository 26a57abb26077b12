"""REST endpoints through the real app: conversations, analyze, KB, CRM, health and auth."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from service_build import hello, make_settings, recv, serve, turn
from starlette.testclient import TestClient

from assist.service.app import create_app


def test_rest_turn_returns_the_same_analysis_the_websocket_pushes(client: TestClient) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "rest-1")
        r = client.post("/v1/conversations/rest-1/turns",
                        json={"turn_id": "t1", "role": "customer", "text": "发票怎么开？"})
        assert r.status_code == 200 and r.headers["assist-duplicate"] == "false"
        body = r.json()
        ack, pushed = recv(ws), recv(ws)
        assert ack["type"] == "ack" and ack["turn_id"] == "t1"
        assert pushed == body and body["type"] == "analysis" and body["intent"]["label"] == "invoice"
    again = client.post("/v1/conversations/rest-1/turns", json={"turn_id": "t1", "role": "customer",
                                                                "text": "发票怎么开？"})
    assert again.headers["assist-duplicate"] == "true" and again.json() == body

    transcript = client.get("/v1/conversations/rest-1").json()
    assert transcript["conversation_id"] == "rest-1" and transcript["last_seq"] == 2
    (t,) = transcript["turns"]
    assert t["status"] == "processed" and t["analysis"]["intent"]["label"] == "invoice"
    assert t["actions"] == body["actions"] and t["analysis_seq"] == body["seq"]
    assert transcript["state"]["customer_turns"] == 1

    frames = client.get("/v1/conversations/rest-1/frames", params={"after": 1}).json()["frames"]
    assert [f["seq"] for f in frames] == [2]


def test_feedback_and_resolve(client: TestClient) -> None:
    body = client.post("/v1/conversations/rest-fb/turns",
                       json={"turn_id": "t1", "role": "customer", "text": "纸尿裤尺码怎么选，宝宝12斤"}).json()
    suggestion = body["actions"][0]["id"]
    fb = client.post("/v1/conversations/rest-fb/feedback", json={"suggestion_id": suggestion, "outcome": "edited",
                                                                 "edited_text": "亲，12斤选S码哦"})
    assert fb.status_code == 200, fb.text
    event = fb.json()
    assert event["type"] == "event" and event["event"] == "suggestion.feedback"
    assert event["state"]["suggestions"][suggestion]["status"] == "edited"
    missing = client.post("/v1/conversations/rest-fb/feedback", json={"suggestion_id": "nope", "outcome": "accepted"})
    assert missing.status_code == 404 and missing.json()["code"] == "suggestion.not_found"
    resolved = client.post("/v1/conversations/rest-fb/resolve")
    assert resolved.status_code == 200 and resolved.json()["event"] == "conversation.resolved"
    assert resolved.json()["state"]["resolved"] is True
    transcript = client.get("/v1/conversations/rest-fb").json()
    assert [(f["suggestion_id"], f["outcome"]) for f in transcript["feedback"]] == [(suggestion, "edited")]


def test_conversation_errors(client: TestClient) -> None:
    r = client.get("/v1/conversations/nobody")
    assert r.status_code == 404 and r.json() == {"code": "conversation.not_found", "message": r.json()["message"]}
    r = client.post("/v1/conversations/nobody/resolve")
    assert r.status_code == 404 and r.json()["code"] == "conversation.not_found"
    r = client.post("/v1/conversations/c/turns", json={"turn_id": "t", "role": "customer", "text": "x" * 5000})
    assert r.status_code == 422 and r.json()["code"] == "turn.text_too_long"
    r = client.post("/v1/conversations/c/turns", json={"turn_id": "t", "role": "nobody", "text": "x"})
    assert r.status_code == 422 and r.json()["code"] == "invalid"
    assert client.get("/v1/nothing-here").json()["code"] == "not_found"


def test_analyze_is_stateless(client: TestClient) -> None:
    r = client.post("/v1/analyze", json={"text": "你们这破东西用两天就坏了，我要投诉！"})
    assert r.status_code == 200
    a = r.json()
    assert a["intent"]["label"] in ("complaint", "product_defect")
    assert a["sentiment"]["label"] == "negative"
    assert set(a["timings_ms"]) >= {"embed", "intent", "sentiment", "retrieve"}
    assert client.get("/v1/conversations/analyze").status_code == 404  # nothing stored


def test_kb_edit_is_searchable_at_once_and_versioned(client: TestClient) -> None:
    eid = f"test-kb-{uuid.uuid4().hex[:8]}"
    question = "宠物自动喂食器断电后定时会丢失吗？"
    created = client.post("/v1/kb/entries", json={
        "id": eid, "question": question, "similar": ["喂食器停电了定时还在吗"],
        "answer": "不会丢失，喂食器内置纽扣电池保存定时设置。", "category": "测试/喂食器"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    try:
        assert client.post("/v1/kb/entries", json={"id": eid, "question": "q", "answer": "a"}).json()["code"] == \
            "kb.entry_exists"
        hits = client.get("/v1/kb/search", params={"q": "喂食器停电定时会不会丢"}).json()["hits"]
        assert hits[0]["kb_id"] == eid

        updated = client.put(f"/v1/kb/entries/{eid}", json={
            "question": question, "similar": ["喂食器停电了定时还在吗"],
            "answer": "不会丢失：定时保存在机器里，来电后自动恢复。", "category": "测试/喂食器", "expected_version": 1})
        assert updated.status_code == 200 and updated.json()["version"] == 2
        hits = client.get("/v1/kb/search", params={"q": question}).json()["hits"]
        assert hits[0]["kb_id"] == eid and "来电后自动恢复" in hits[0]["answer"]
        stale = client.put(f"/v1/kb/entries/{eid}", json={"question": question, "answer": "x",
                                                          "expected_version": 1})
        assert stale.status_code == 409 and stale.json()["code"] == "conflict"

        history = client.get(f"/v1/kb/entries/{eid}/history").json()["entries"]
        assert [h["version"] for h in history] == [1, 2]
        assert "纽扣电池" in history[0]["answer"] and "来电后自动恢复" in history[1]["answer"]
        assert client.get(f"/v1/kb/entries/{eid}").json()["version"] == 2
        listed = {e["id"] for e in client.get("/v1/kb/entries").json()["entries"]}
        assert eid in listed and "mb-diaper-size-choice" in listed
    finally:
        retired = client.delete(f"/v1/kb/entries/{eid}")
    assert retired.status_code == 200 and retired.json()["status"] == "retired" and retired.json()["version"] == 3
    hits = client.get("/v1/kb/search", params={"q": question}).json()["hits"]
    assert all(h["kb_id"] != eid for h in hits)
    assert client.get("/v1/kb/entries/nope").json()["code"] == "kb.entry_not_found"
    assert client.put("/v1/kb/entries/nope", json={"question": "q", "answer": "a"}).status_code == 404


PET_KB = [
    {"id": "pet-feeder-timer", "question": "自动喂食器怎么设置定时？", "similar": ["喂食器定时怎么调"],
     "answer": "长按SET键3秒进入定时，按上下键选时间和份数。", "category": "宠物/喂食器", "skus": ["PET-F1"]},
    {"id": "pet-litter-odor", "question": "猫砂盆有异味怎么办？", "similar": ["猫砂很臭"],
     "answer": "每天铲屎，每周整盆更换，可撒除臭珠。", "category": "宠物/猫砂", "skus": ["PET-L1"]},
    {"id": "pet-shipping", "question": "多久发货？", "answer": "付款后24小时内发货。", "category": "店铺/物流"},
]


def _write_pet_shop(root: Path) -> Path:
    import json

    root.mkdir()
    (root / "kb.jsonl").write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in PET_KB), encoding="utf-8")
    (root / "catalog.jsonl").write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in [
        {"sku": "PET-F1", "name": "喵管家 自动喂食器", "category": "宠物/喂食器", "price": 199, "stock": 20},
        {"sku": "PET-L1", "name": "豆腐猫砂 6L", "category": "宠物/猫砂", "price": 39, "stock": 200,
         "consumable": True}]), encoding="utf-8")
    (root / "cross_sell.jsonl").write_text(json.dumps(
        {"from": "PET-F1", "to": "PET-L1", "reason": "养猫的顾客常一起买猫砂", "script": "亲，猫砂也可以顺手囤一些～",
         "triggers": ["猫砂"], "weight": 0.5}, ensure_ascii=False), encoding="utf-8")
    return root


def test_unseen_shop_kb_edit_and_reindex(tmp_path: Path) -> None:
    """A shop the project has never seen, served from its own directory; reindex rebuilds from the store."""
    from assist.runtime import load_runtime

    shop = _write_pet_shop(tmp_path / "pet-shop")
    settings = make_settings(tmp_path / "a.db", shop_dir=shop, index_dir=tmp_path / "index")
    pet_runtime = load_runtime(settings)
    with serve(settings, pet_runtime) as client:
        assert client.get("/v1/kb/search", params={"q": "猫砂好臭"}).json()["hits"][0]["kb_id"] == "pet-litter-odor"
        r = client.post("/v1/conversations/pet-1/turns", json={"turn_id": "t1", "role": "customer",
                                                               "text": "喂食器定时怎么调啊"})
        assert r.status_code == 200 and r.json()["kb"]["hits"][0]["kb_id"] == "pet-feeder-timer"
        client.post("/v1/kb/entries", json={"id": "pet-water", "question": "饮水机多久换一次滤芯？",
                                            "answer": "建议每月更换一次滤芯。", "category": "宠物/饮水机"})
        client.delete("/v1/kb/entries/pet-shipping")
        live_encoder = pet_runtime.pipeline.retriever.encoder
        r = client.post("/v1/kb/reindex")
        assert r.status_code == 200 and r.json()["entries"] == 3, r.text
        # The rebuild embedded the KB through the batcher's background lane, off the hot path, and
        # the new index keeps the live encoder for later edits.
        services = client.app.state.services  # type: ignore[attr-defined]
        assert services.batcher.background_jobs > 0
        assert pet_runtime.pipeline.retriever.encoder is live_encoder
        hits = client.get("/v1/kb/search", params={"q": "滤芯多久换"}).json()["hits"]
        assert hits[0]["kb_id"] == "pet-water"
        assert all(h["kb_id"] != "pet-shipping" for h in client.get("/v1/kb/search",
                                                                    params={"q": "多久发货"}).json()["hits"])


def test_crm_profile_and_order_events_reach_the_console(client: TestClient) -> None:
    put = client.put("/v1/customers/u-crm", json={"tier": "vip", "orders": [
        {"order_id": "o1", "sku": "MB-DP-003", "status": "paid", "paid_at": "2026-11-20T10:00:00+08:00"}]})
    assert put.status_code == 200 and put.json()["customer"]["tier"] == "vip"
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "crm-c1", customer={"id": "u-crm"})  # id only: the stored profile is used
        _, analysis = turn(ws, "t1", "我的纸尿裤怎么还没发货")
        assert analysis["state"]["customer"]["tier"] == "vip"
        r = client.post("/v1/orders/events", json={"customer_id": "u-crm", "order_id": "o1", "type": "delayed",
                                                    "ts": "2026-11-22T10:00:00+08:00", "detail": "仓库爆仓"})
        assert r.status_code == 200, r.text
        (event,) = r.json()["events"]
        assert event["event"] == "order.delayed" and event["conversation_id"] == "crm-c1"
        pushed = recv(ws)
        assert pushed == event
        orders = pushed["state"]["customer"]["orders"]
        assert orders[0]["delayed_at"] is not None
        # Profile pushes reach open conversations as an event too.
        client.put("/v1/customers/u-crm", json={"tier": "svip", "opt_out_marketing": True})
        update = recv(ws)
        assert update["event"] == "profile.updated" and update["state"]["customer"]["tier"] == "svip"


def test_token_protects_rest_but_not_probes(tmp_path: Path, runtime: Any) -> None:
    with serve(make_settings(tmp_path / "a.db", api_token="s3cret"), runtime) as client:
        r = client.post("/v1/analyze", json={"text": "你好"})
        assert r.status_code == 401 and r.json()["code"] == "auth.missing"
        r = client.post("/v1/analyze", json={"text": "你好"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_readyz_before_and_after_the_runtime_has_loaded(tmp_path: Path, runtime: Any) -> None:
    release = threading.Event()

    def slow_loader(_settings: Any) -> Any:
        assert release.wait(30)
        return runtime

    app = create_app(make_settings(tmp_path / "a.db"), loader=slow_loader)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "service.not_ready"
        r = client.post("/v1/conversations/c/turns", json={"turn_id": "t", "role": "customer", "text": "在吗"})
        assert r.status_code == 503 and r.json()["code"] == "service.not_ready"
        with client.websocket_connect("/v1/ws") as ws:
            ws.send_json({"type": "hello", "v": 1, "conversation_id": "c"})
            assert recv(ws)["code"] == "service.not_ready"
            release.set()
            from service_build import wait_ready

            wait_ready(client)
            hello(ws, "c")  # the same connection works once ready
        assert client.get("/readyz").json()["status"] == "ready"


def test_metrics(client: TestClient) -> None:
    client.post("/v1/conversations/m/turns", json={"turn_id": "t1", "role": "customer", "text": "在吗"})
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, "m")
        text = client.get("/metrics").text
        assert "assist_ws_connections 1.0" in text
    assert 'assist_turns_processed_total{role="customer"} 1.0' in text
    assert "assist_turn_latency_seconds_count 1.0" in text
    assert "assist_embed_batch_size_count" in text and "assist_errors_total" in text
