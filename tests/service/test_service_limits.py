"""Limits tied to keys: rate limits, lockout, connection caps; origins; refusing to run open off loopback.

Small limits through settings and a hand-stepped clock for the bookkeeping: no sleeping, no
timing asserts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from service_build import hello, make_settings, recv, serve
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from assist.access import create_key
from assist.cli import main
from assist.service.auth import exposure_problem, origin_allowed
from assist.service.limits import ConnectionSlots, FailureLockout, TokenBuckets
from assist.settings import Settings
from assist.store.db import Database
from assist.store.records import Scope


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [None, None, None]
    assert buckets.take("k") == pytest.approx(0.5)  # one token per 0.5 s
    assert buckets.take("other") is None  # per key
    clock.now = 0.5
    assert buckets.take("k") is None
    assert TokenBuckets(0, 1, clock=clock).take("k") is None  # rate 0: off


def test_lockout_after_repeated_failures_in_the_window() -> None:
    clock = Clock()
    lockout = FailureLockout(3, window_s=60, lockout_s=300, clock=clock)
    assert lockout.fail("a") is None
    clock.now = 61  # the first failure left the window
    assert lockout.fail("a") is None and lockout.fail("a") is None
    assert lockout.locked_for("a") is None
    assert lockout.fail("a") == 300
    assert lockout.locked_for("a") == 300 and lockout.locked_for("b") is None
    clock.now = 361
    assert lockout.locked_for("a") is None


def test_connection_slots_per_key_and_total() -> None:
    slots = ConnectionSlots(per_key=1, total=2)
    assert slots.connect() is None and slots.bind("k") is None
    assert slots.connect() is None and "key's limit" in (slots.bind("k") or "")
    assert "server's limit" in (slots.connect() or "")
    slots.unbind("k")
    slots.disconnect()
    assert slots.bind("k") is None and slots.connect() is None


def test_origins() -> None:
    s = Settings(env="test")
    assert origin_allowed(None, "127.0.0.1:8000", s)  # non-browser clients send none
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", s)  # our own page
    assert origin_allowed("http://localhost:8123", "localhost:8123", s)
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", s)  # another local page
    assert not origin_allowed("https://evil.example", "127.0.0.1:8000", s)
    assert not origin_allowed("http://evil.example:8000", "evil.example:8000", s)  # DNS rebinding
    listed = Settings(env="test", ws_origins=["https://console.shop.cn"])
    assert origin_allowed("https://console.shop.cn", "assist.lan:8000", listed)


def test_open_service_only_on_loopback_or_when_allowed() -> None:
    assert exposure_problem(Settings(env="test"), has_keys=False) is None
    assert "0.0.0.0" in (exposure_problem(Settings(env="test", host="0.0.0.0"), has_keys=False) or "")
    assert exposure_problem(Settings(env="test", host="0.0.0.0"), has_keys=True) is None
    assert exposure_problem(Settings(env="test", host="0.0.0.0", allow_open=True), has_keys=False) is None
    prod = Settings.model_construct(env="prod", host="127.0.0.1", allow_open=True, api_token="")
    assert "prod" in (exposure_problem(prod, has_keys=False) or "")
    with pytest.raises(ValueError, match="SQLite"):  # prod on SQLite still refuses, whatever the keys
        Settings(env="prod", api_token="t")


def _key(db_path: Path, scope: Scope = Scope.admin) -> str:
    async def run() -> str:
        async with Database.open(f"sqlite+aiosqlite:///{db_path}") as db:
            await db.migrate()
            return (await create_key(db, "default", scope))[1]

    return asyncio.run(run())


def test_rest_rate_limit_and_lockout(tmp_path: Path, runtime: Any) -> None:
    db = tmp_path / "a.db"
    key = _key(db)
    settings = make_settings(db, rest_rate_per_s=0.001, rest_burst=2, auth_fail_limit=3)
    with serve(settings, runtime) as client:
        h = {"Authorization": f"Bearer {key}"}
        assert [client.get("/v1/kb/entries", headers=h).status_code for _ in range(2)] == [200, 200]
        r = client.get("/v1/kb/entries", headers=h)
        assert r.status_code == 429 and r.json()["code"] == "rate.limited" and int(r.headers["Retry-After"]) >= 1
        wrong = {"Authorization": "Bearer " + key[:-4] + "AAAA"}  # right id, wrong secret
        assert [client.get("/v1/kb/entries", headers=wrong).json()["code"] for _ in range(3)] == ["auth.invalid"] * 3
        r = client.get("/v1/kb/entries", headers=h)  # locked out: even the right key waits
        assert r.status_code == 429 and r.json()["code"] == "auth.locked" and r.headers["Retry-After"] == "300"
        assert client.get("/healthz").status_code == 200


def test_websocket_turn_rate_connection_caps_and_origin(tmp_path: Path, runtime: Any) -> None:
    db = tmp_path / "a.db"
    key = _key(db, Scope.console)
    settings = make_settings(db, ws_turn_rate_per_s=0.001, ws_turn_burst=1, ws_max_per_key=1, ws_max_total=2,
                             ws_origins=["https://console.shop.cn"])
    with serve(settings, runtime) as client:
        h = {"Authorization": f"Bearer {key}"}
        with client.websocket_connect("/v1/ws", headers=h) as ws:
            hello(ws, "lim")
            ws.send_json({"v": 1, "type": "turn", "turn_id": "t1", "role": "agent", "text": "您好"})
            assert recv(ws)["type"] == "ack"
            assert recv(ws)["type"] == "analysis"
            ws.send_json({"v": 1, "type": "turn", "turn_id": "t2", "role": "agent", "text": "您好"})
            err = recv(ws)
            assert err["code"] == "rate.limited" and err["turn_id"] == "t2"  # refused before the ack
            with client.websocket_connect("/v1/ws", headers=h) as second:  # the key's one slot is taken
                assert recv(second)["code"] == "ws.too_many_connections"
            with client.websocket_connect("/v1/ws") as anon, client.websocket_connect("/v1/ws") as third:
                assert recv(third)["code"] == "ws.too_many_connections"  # 2 in total
                del anon
        transcript = client.get("/v1/conversations/lim", headers=h).json()
        assert [t["turn_id"] for t in transcript["turns"]] == ["t1"]
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/v1/ws", headers={**h, "Origin": "https://evil.example"}):
                pass
        assert refused.value.code == 1008
        with client.websocket_connect("/v1/ws", headers={**h, "Origin": "https://console.shop.cn"}) as ws:
            hello(ws, "lim")


def test_unready_open_app_off_loopback_refuses(tmp_path: Path, runtime: Any) -> None:
    from service_build import create_app

    app = create_app(make_settings(tmp_path / "a.db", host="0.0.0.0"), runtime=runtime)
    with TestClient(app) as client:
        for _ in range(200):
            body = client.get("/readyz").json()
            if "failed" in body.get("message", ""):
                break
            time.sleep(0.05)
        assert "0.0.0.0" in body["message"], body
        assert client.post("/v1/analyze", json={"text": "在吗"}).status_code == 503


def test_keys_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSIST_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    assert main(["serve", "--host", "0.0.0.0"]) == 2  # no key yet: refused before binding
    assert "ASSIST_ALLOW_OPEN" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "default", "--scope", "crm", "--label", "erp"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ak_")
    assert main(["keys", "create", "--tenant", "nobody", "--scope", "crm"]) == 2
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    key_id = token.split("_")[1]
    assert key_id in listed and "erp" in listed and "active" in listed and token.split("_")[2] not in listed
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "list", "--tenant", "default"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tenants", "add", "Bad Id", "--shop", str(tmp_path)]) == 2
