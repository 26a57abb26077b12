"""Tenants and API keys on every endpoint and WebSocket frame type (issue 12, part 1).

The endpoint list is read from the served OpenAPI document, so a new endpoint is covered (or the
test fails until it is classified below). One server for the module: tenant ``shop-b`` (the small
``shop_unseen`` shop) owns the objects, tenant ``default`` is the foreign tenant.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_build import hello, make_settings, recv, serve, turn
from starlette.testclient import TestClient

from assist.access import add_tenant, create_key
from assist.store.db import Database
from assist.store.records import Scope

ROOT = Path(__file__).resolve().parents[2]
SHOP_B = ROOT / "tests" / "fixtures" / "shop_unseen"
SECRET = "秘密B"  # in every object of shop-b; a foreign response must never contain it
TIER_B = "tier-b-secret"

Request = tuple[str, dict[str, Any]]  # (url, TestClient.request kwargs)


class World:
    """The served app, the keys (tenant -> scope -> token) and shop-b's objects."""

    def __init__(self, client: TestClient, keys: dict[str, dict[str, str]]) -> None:
        self.client = client
        self.keys = keys
        self.suggestion_id = ""
        self.replay_id = ""
        self._n = itertools.count()

    def headers(self, tenant: str | None, scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant][scope or 'admin']}"} if tenant else {}

    def n(self) -> int:
        return next(self._n)


def _create_keys(db_path: Path) -> dict[str, dict[str, str]]:
    async def run() -> dict[str, dict[str, str]]:
        async with Database.open(f"sqlite+aiosqlite:///{db_path}") as db:
            await db.migrate()
            await add_tenant(db, "shop-b", SHOP_B)
            out: dict[str, dict[str, str]] = {}
            for tenant in ("default", "shop-b"):
                for scope in Scope:
                    out.setdefault(tenant, {})[scope.value] = (await create_key(db, tenant, scope))[1]
            return out

    return asyncio.run(run())


def _wait_replay(w: World, replay_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if w.client.get(f"/v1/replay/{replay_id}", headers=w.headers("shop-b")).json()["status"] in ("done", "failed"):
            return
        time.sleep(0.2)
    raise AssertionError("replay did not finish")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[World]:
    db_path = tmp_path_factory.mktemp("tenancy") / "assist.db"
    keys = _create_keys(db_path)
    # No rate limits or lockout here: the matrix sends many bad keys on purpose (limits: test_service_limits).
    settings = make_settings(db_path, rest_rate_per_s=0, ws_turn_rate_per_s=0, auth_fail_limit=0)
    with serve(settings, runtime) as client:
        w = World(client, keys)
        h = w.headers("shop-b")
        r = client.put("/v1/customers/cust-b", headers=h, json={"tier": TIER_B})
        assert r.status_code == 200, r.text
        with client.websocket_connect("/v1/ws", headers=w.headers("shop-b", "console")) as ws:
            hello(ws, "conv-b", customer={"id": "cust-b"})
            _, analysis = turn(ws, "b1", f"{SECRET} 换猫粮怎么过渡")
        w.suggestion_id = analysis["actions"][0]["id"]
        for entry_id in ("kb-b", "kb-b-del"):
            r = client.post("/v1/kb/entries", headers=h,
                            json={"id": entry_id, "question": f"{SECRET} 猫粮问题", "answer": "回答"})
            assert r.status_code == 201, r.text
        logs = (SHOP_B / "conversations.jsonl").read_bytes()
        r = client.post("/v1/replay", headers={**h, "content-type": "application/x-ndjson"}, content=logs)
        assert r.status_code == 202, r.text
        w.replay_id = r.json()["id"]
        _wait_replay(w, w.replay_id)
        yield w


def _turn_body(w: World) -> dict[str, Any]:
    return {"json": {"turn_id": f"m{w.n()}", "role": "customer", "text": "猫粮怎么换"}}


# (method, OpenAPI path) -> the request on shop-b's object, and what the foreign tenant must get:
# "404" (the object does not exist for it) or "own" (a list, search or create in its own tenant:
# allowed, and the response must not contain any of shop-b's data).
ENDPOINTS: dict[tuple[str, str], tuple[Callable[[World], Request], str]] = {
    ("post", "/v1/conversations/{conversation_id}/turns"): (
        lambda w: ("/v1/conversations/conv-b/turns", _turn_body(w)), "own"),
    ("post", "/v1/conversations/{conversation_id}/feedback"): (
        lambda w: ("/v1/conversations/conv-b/feedback",
                   {"json": {"suggestion_id": w.suggestion_id, "outcome": "dismissed"}}), "404"),
    ("post", "/v1/conversations/{conversation_id}/resolve"): (
        lambda w: ("/v1/conversations/conv-b/resolve", {"json": {}}), "404"),
    ("get", "/v1/conversations/{conversation_id}"): (lambda w: ("/v1/conversations/conv-b", {}), "404"),
    ("get", "/v1/conversations/{conversation_id}/frames"): (
        lambda w: ("/v1/conversations/conv-b/frames", {}), "404"),
    ("post", "/v1/analyze"): (lambda w: ("/v1/analyze", {"json": {"text": "换猫粮怎么过渡"}}), "own"),
    ("get", "/v1/kb/entries"): (lambda w: ("/v1/kb/entries", {}), "own"),
    ("post", "/v1/kb/entries"): (
        lambda w: ("/v1/kb/entries", {"json": {"id": f"kb-new-{w.n()}", "question": "新问题", "answer": "答"}}),
        "own"),
    ("get", "/v1/kb/entries/{entry_id}"): (lambda w: ("/v1/kb/entries/kb-b", {}), "404"),
    ("put", "/v1/kb/entries/{entry_id}"): (
        lambda w: ("/v1/kb/entries/kb-b", {"json": {"question": f"{SECRET} 猫粮问题", "answer": f"改{w.n()}"}}),
        "404"),
    ("delete", "/v1/kb/entries/{entry_id}"): (lambda w: ("/v1/kb/entries/kb-b-del", {}), "404"),
    ("get", "/v1/kb/entries/{entry_id}/history"): (lambda w: ("/v1/kb/entries/kb-b/history", {}), "404"),
    ("get", "/v1/kb/search"): (lambda w: ("/v1/kb/search", {"params": {"q": f"{SECRET} 猫粮问题"}}), "own"),
    ("post", "/v1/kb/reindex"): (lambda w: ("/v1/kb/reindex", {}), "own"),
    ("put", "/v1/customers/{customer_id}"): (lambda w: ("/v1/customers/cust-b", {"json": {"tier": "vip"}}), "own"),
    ("post", "/v1/orders/events"): (
        lambda w: ("/v1/orders/events", {"json": {"customer_id": "cust-b", "order_id": "o1", "type": "delayed",
                                                  "ts": "2026-12-01T10:00:00+08:00"}}), "own"),
    ("post", "/v1/replay"): (
        lambda w: ("/v1/replay", {"headers": {"content-type": "application/x-ndjson"},
                                  "content": (SHOP_B / "conversations.jsonl").read_bytes()}), "own"),
    ("get", "/v1/replay"): (lambda w: ("/v1/replay", {}), "own"),
    ("get", "/v1/insights/quality-alerts"): (
        lambda w: ("/v1/insights/quality-alerts", {"params": {"status": "all"}}), "own"),
    ("get", "/v1/replay/{replay_id}"): (lambda w: (f"/v1/replay/{w.replay_id}", {}), "404"),
    ("get", "/v1/replay/{replay_id}/events"): (lambda w: (f"/v1/replay/{w.replay_id}/events", {}), "404"),
    ("get", "/v1/replay/{replay_id}/report.html"): (lambda w: (f"/v1/replay/{w.replay_id}/report.html", {}), "404"),
    ("get", "/v1/replay/{replay_id}/turns"): (lambda w: (f"/v1/replay/{w.replay_id}/turns", {}), "404"),
}
PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
# Foreign "own" creates run last, so the "404" checks see a tenant that has none of these ids.
_ORDER = {"404": 0, "own": 1}


def _operations(client: TestClient) -> list[tuple[str, str, list[str]]]:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    ops = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            scopes = [s for req in op.get("security", []) for s in req.get("bearer", [])]
            ops.append((method, path, scopes))
    return ops


def _call(w: World, method: str, path: str, headers: dict[str, str]) -> Any:
    url, kwargs = ENDPOINTS[(method, path)][0](w)
    kwargs = dict(kwargs)
    return w.client.request(method.upper(), url, headers={**kwargs.pop("headers", {}), **headers}, **kwargs)


def test_every_endpoint_is_classified_and_needs_a_key(world: World) -> None:
    ops = _operations(world.client)
    unclassified = [(m, p) for m, p, scopes in ops if (m, p) not in ENDPOINTS and (m, p) not in PUBLIC]
    assert not unclassified, f"classify these endpoints in ENDPOINTS (or PUBLIC): {unclassified}"
    unprotected = [(m, p) for m, p, scopes in ops if (m, p) not in PUBLIC and len(scopes) != 1]
    assert not unprotected, f"every non-public endpoint names exactly one scope: {unprotected}"
    stale = set(ENDPOINTS) - {(m, p) for m, p, _ in ops}
    assert not stale, f"ENDPOINTS lists endpoints the app does not serve: {stale}"


def test_tenant_matrix(world: World) -> None:
    """No key -> 401; a scope that does not cover it -> 403; the right one -> neither; the other
    tenant's key -> 404 or its own (empty) data, never shop-b's."""
    ops = sorted(((m, p, s[0]) for m, p, s in _operations(world.client) if (m, p) in ENDPOINTS),
                 key=lambda o: _ORDER[ENDPOINTS[(o[0], o[1])][1]])
    tried = 0
    for method, path, needed in ops:
        r = _call(world, method, path, {})
        assert r.status_code == 401 and r.json()["code"] == "auth.missing", (method, path, r.text)
        r = _call(world, method, path, {"Authorization": "Bearer ak_000000000000_" + "x" * 43})
        assert r.status_code == 401 and r.json()["code"] == "auth.invalid", (method, path, r.text)
        for scope in Scope:
            r = _call(world, method, path, world.headers("shop-b", scope.value))
            allowed = scope is Scope.admin or scope.value == needed
            if allowed:
                assert r.status_code not in (401, 403) and r.status_code < 500, (method, path, scope, r.text)
            else:
                assert r.status_code == 403 and r.json()["code"] == "auth.forbidden", (method, path, scope, r.text)
            tried += 1
        foreign = ENDPOINTS[(method, path)][1]
        r = _call(world, method, path, world.headers("default", "admin"))
        if foreign == "404":
            assert r.status_code == 404, (method, path, r.status_code, r.text)  # its message echoes the id asked
        else:
            assert r.status_code < 500 and world.replay_id not in r.text, (method, path, r.text)
        assert SECRET not in r.text and TIER_B not in r.text, (method, path, r.text)
        tried += 3
    # Nothing of the foreign tenant's writes reached shop-b's objects.
    r = world.client.put("/v1/customers/cust-b", headers=world.headers("default", "crm"), json={"tier": "foreign"})
    assert r.json()["conversations"] == []  # shop-b's conv-b of customer cust-b is not the foreign tenant's
    transcript = world.client.get("/v1/conversations/conv-b", headers=world.headers("shop-b")).json()
    assert transcript["state"]["customer"]["tier"] != "foreign"
    foreign_turns = world.client.get("/v1/conversations/conv-b", headers=world.headers("default")).json()["turns"]
    assert {t["turn_id"] for t in foreign_turns}.isdisjoint({t["turn_id"] for t in transcript["turns"]})
    assert not any(f["outcome"] == "dismissed" and f["suggestion_id"] != world.suggestion_id
                   for f in transcript["feedback"])
    print(f"tenant matrix: {len(ops)} endpoints x 6 keys (none, malformed, 3 scopes, foreign) = {tried} calls")


def test_websocket_frames_on_a_foreign_conversation(world: World) -> None:
    c = world.client
    r = c.post("/v1/conversations/ws-b/turns", headers=world.headers("shop-b", "console"),
               json={"turn_id": "w1", "role": "customer", "text": f"{SECRET} 猫粮怎么换"})
    suggestion = r.json()["actions"][0]["id"]
    before = c.get("/v1/conversations/ws-b", headers=world.headers("shop-b")).json()
    with c.websocket_connect("/v1/ws", headers=world.headers("default", "console")) as ws:
        ws.send_json({"v": 1, "type": "hello", "conversation_id": "ws-b", "create": False})
        assert recv(ws)["code"] == "conversation.not_found"
        for frame in ({"type": "resume", "last_seq": 0}, {"type": "turn", "turn_id": "x", "role": "customer",
                                                         "text": "在吗"},
                      {"type": "feedback", "suggestion_id": suggestion, "outcome": "accepted"},
                      {"type": "resolve"}, {"type": "draft", "text": "亲", "draft_id": 1}):
            ws.send_json({"v": 1, **frame})
            assert recv(ws)["code"] == "ws.state", frame
        # Opening the id creates the foreign tenant's own conversation: empty, and shop-b's stays apart.
        ack = hello(ws, "ws-b-other")
        assert ack["last_seq"] == 0
        ws.send_json({"v": 1, "type": "resume", "last_seq": 0})
        ws.send_json({"v": 1, "type": "feedback", "suggestion_id": suggestion, "outcome": "accepted"})
        err = recv(ws)
        assert err["type"] == "error" and err["code"] == "suggestion.not_found", err
    with c.websocket_connect("/v1/ws", headers=world.headers("default", "console")) as ws:
        ack = hello(ws, "ws-b")  # the same id, in the foreign tenant: a new, empty conversation
        assert ack["last_seq"] == 0
        ws.send_json({"v": 1, "type": "resume", "last_seq": 0})
        ws.send_json({"v": 1, "type": "resolve"})
        frames = [recv(ws), recv(ws)]
        assert all(SECRET not in str(f) and TIER_B not in str(f) for f in frames)
        assert frames[0]["seq"] == 1  # its own first frame: none of shop-b's were replayed
    after = c.get("/v1/conversations/ws-b", headers=world.headers("shop-b")).json()
    assert after["last_seq"] == before["last_seq"] and after["turns"] == before["turns"]


def test_websocket_needs_a_console_key(world: World) -> None:
    c = world.client
    with c.websocket_connect("/v1/ws") as ws:
        ws.send_json({"v": 1, "type": "hello", "conversation_id": "conv-b"})
        assert recv(ws)["code"] == "auth.missing"
        ws.send_json({"v": 1, "type": "hello", "conversation_id": "conv-b", "token": world.keys["shop-b"]["crm"]})
        assert recv(ws)["code"] == "auth.forbidden"
        hello(ws, "conv-b", token=world.keys["shop-b"]["console"])  # the key may also come in hello
    with c.websocket_connect("/v1/ws", headers=world.headers("shop-b", "crm")) as ws:
        err = recv(ws)
        assert err["code"] == "auth.forbidden"
