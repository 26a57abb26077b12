"""The scripted conversation of the demo shop, end to end over the WebSocket.

A mother asks about diapers leaking at night, gets the KB answer, says "谢谢，解决了" — and only then
does assist suggest the rash cream (护臀霜) that complements the diapers she bought. The same
conversation with an angry turn, or with a customer who opted out of marketing, yields no
cross-sell at all (DESIGN §1: solve first, then suggest).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service_build import action_types, hello, turn
from starlette.testclient import TestClient

RASH_CREAM = "MB-RC-001"


def _profile(customer_id: str, *, opt_out: bool = False) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": customer_id, "tier": "normal", "opt_out_marketing": opt_out, "orders": [
        {"order_id": f"{customer_id}-o1", "sku": "MB-DP-005", "status": "delivered",
         "paid_at": (now - timedelta(days=5)).isoformat(), "delivered_at": (now - timedelta(days=3)).isoformat()}]}


def _chat(client: TestClient, cid: str, profile: dict[str, Any], question: str) -> list[dict[str, Any]]:
    with client.websocket_connect("/v1/ws") as ws:
        hello(ws, cid, customer=profile)
        _, first = turn(ws, "c1", question)
        _, _agent = turn(ws, "a1", "亲，晚上建议换成夜安心加厚款，穿好后把腰贴往上提一点、腿围褶边拉出来，就不容易侧漏了",
                         role="agent")
        _, thanks = turn(ws, "c2", "谢谢，解决了")
    return [first, thanks]


def test_diaper_question_answer_thanks_then_rash_cream(client: TestClient) -> None:
    first, thanks = _chat(client, "scenario-happy", _profile("u-happy"), "宝宝晚上穿纸尿裤老是侧漏怎么办")
    assert first["intent"]["label"] in ("usage_howto", "presale_product", "product_defect")
    assert first["kb"]["answered"] and first["kb"]["hits"][0]["kb_id"] == "mb-diaper-night-leak"
    answer = next(a for a in first["actions"] if a["type"] == "answer")
    assert answer["kb_id"] == "mb-diaper-night-leak" and answer["script"]
    assert "cross_sell" not in action_types(first)  # not before the problem is solved

    assert thanks["intent"]["label"] == "greeting_thanks"
    assert thanks["state"]["stage"] == "resolved"
    cross = [a for a in thanks["actions"] if a["type"] == "cross_sell"]
    assert len(cross) == 1, thanks["actions"]
    (offer,) = cross
    assert offer["sku"] == RASH_CREAM
    assert offer["reason"] and offer["script"] and "护臀" in offer["script"]


def test_angry_customer_gets_no_cross_sell(client: TestClient) -> None:
    first, thanks = _chat(client, "scenario-angry", _profile("u-angry"),
                          "你们这什么破纸尿裤！宝宝晚上天天侧漏，气死我了！")
    assert first["sentiment"]["label"] == "negative"
    assert "cross_sell" not in action_types(first) and "cross_sell" not in action_types(thanks)


def test_opted_out_customer_gets_no_cross_sell(client: TestClient) -> None:
    first, thanks = _chat(client, "scenario-optout", _profile("u-optout", opt_out=True),
                          "宝宝晚上穿纸尿裤老是侧漏怎么办")
    assert first["kb"]["hits"][0]["kb_id"] == "mb-diaper-night-leak"
    assert thanks["state"]["stage"] == "resolved"
    assert "cross_sell" not in action_types(first) and "cross_sell" not in action_types(thanks)
