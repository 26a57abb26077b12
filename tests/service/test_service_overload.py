"""Admission control end to end, with the real model: refusal before the ack, and overload.

The bound is asserted as an invariant (the live backlog never passed it, nothing leaked, every
acknowledged turn was analysed), never as wall-clock timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_build import make_settings, recv, serve

from assist.service.deps import AppServices

BURST = 12  # turns per conversation, sent back to back
CONSOLES = 6


def _services(client: Any) -> AppServices:
    services: AppServices = client.app.state.services
    return services


def test_a_turn_over_the_bound_is_refused_before_it_is_stored(tmp_path: Path, runtime: Any) -> None:
    settings = make_settings(tmp_path / "a.db", admit_backlog_s=0.5)
    with serve(settings, runtime) as client:
        admission = _services(client).admission
        assert admission is not None
        # Hold the backlog full with one forced ticket (like a big recovery), then offer turns.
        held = client.portal.call(lambda: _admit(admission))  # type: ignore[attr-defined]
        r = client.post("/v1/conversations/busy1/turns", json={"turn_id": "t1", "role": "customer", "text": "在吗"})
        assert r.status_code == 503 and r.json()["code"] == "server.busy", r.text
        assert int(r.headers["Retry-After"]) >= 1
        r = client.post("/v1/analyze", json={"text": "热水器显示E1怎么办"})
        assert r.status_code == 503 and r.json()["code"] == "server.busy", r.text
        with client.websocket_connect("/v1/ws") as ws:
            ws.send_json({"type": "hello", "v": 1, "conversation_id": "busy2"})
            assert recv(ws)["ref"] == "hello"
            assert admission.is_live(_services(client).conversations.admission_key("busy2"))  # a console watches: its turns are served first
            ws.send_json({"type": "turn", "v": 1, "turn_id": "t1", "role": "agent", "text": "亲，您好"})
            err = recv(ws)
            assert err["type"] == "error" and err["code"] == "server.busy" and err["turn_id"] == "t1", err
            assert err["retry_after"] >= 1 and err["seq"] is None
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["overloaded"] is True, ready.text
            assert ready.json()["status"] == "overloaded"
            client.portal.call(lambda: admission.release(held))  # type: ignore[attr-defined]
            ws.send_json({"type": "turn", "v": 1, "turn_id": "t1", "role": "agent", "text": "亲，您好"})  # resent
            frames = [recv(ws), recv(ws)]
            assert [f["type"] for f in frames] == ["ack", "analysis"], frames
        assert not admission.is_live(_services(client).conversations.admission_key("busy2"))  # the console left: its backlog would now come last
        # Nothing of the refused turns was stored: busy1 does not exist, busy2 has the resent turn once.
        assert client.get("/v1/conversations/busy1").status_code == 404
        assert [t["turn_id"] for t in client.get("/v1/conversations/busy2").json()["turns"]] == ["t1"]
        metrics = client.get("/metrics").text
        assert 'assist_admit_turns_total{outcome="refused"} 3' in metrics
        assert "assist_admit_backlog_live_seconds" in metrics


async def _admit(admission: Any) -> Any:
    return admission.admit("recovered", tokens=5000, force=True)


def test_overload_refuses_some_turns_and_analyses_every_acknowledged_one(tmp_path: Path, runtime: Any) -> None:
    # A small bound, so a burst from a few consoles overloads it whatever the machine's speed.
    settings = make_settings(tmp_path / "o.db", admit_backlog_s=0.3)
    with serve(settings, runtime) as client:
        services = _services(client)
        admission = services.admission
        assert admission is not None
        sockets = []
        for i in range(CONSOLES):
            ws = client.websocket_connect("/v1/ws").__enter__()
            ws.send_json({"type": "hello", "v": 1, "conversation_id": f"ov{i}"})
            assert recv(ws)["ref"] == "hello"
            sockets.append(ws)
        for n in range(BURST):  # every console sends its whole burst at once, faster than the encoder
            for i, ws in enumerate(sockets):
                role = "customer" if n % 3 else "agent"
                ws.send_json({"type": "turn", "v": 1, "turn_id": f"t{n}", "role": role,
                              "text": f"我的订单{i}-{n}什么时候发货，已经等了好几天了" if role == "customer" else "亲，稍等"})
        acked: dict[str, set[str]] = {}
        busy: dict[str, set[str]] = {}
        analysed: dict[str, set[str]] = {}
        for i, ws in enumerate(sockets):
            cid = f"ov{i}"
            acked[cid], busy[cid], analysed[cid] = set(), set(), set()
            # Each turn ends in exactly one of: ack then analysis, or server.busy (no ack).
            while len(busy[cid]) + len(analysed[cid]) < BURST:
                f = recv(ws, timeout=120)
                if f["type"] == "ack":
                    acked[cid].add(f["turn_id"])
                elif f["type"] == "analysis":
                    assert f["turn_id"] in acked[cid], f  # never analysed before its ack
                    analysed[cid].add(f["turn_id"])
                elif f["type"] == "error":
                    assert f["code"] == "server.busy" and f["retry_after"] >= 1, f
                    assert f["turn_id"] not in acked[cid], f  # refused means never acked
                    busy[cid].add(f["turn_id"])
            ws.__exit__(None, None, None)
        n_busy = sum(map(len, busy.values()))
        n_acked = sum(map(len, acked.values()))
        assert n_busy > 0 and n_acked > 0, (n_busy, n_acked)
        assert acked == analysed  # 0 acknowledged turns lost
        # The bound held: live work admitted never exceeded it (plus the one turn an empty
        # backlog always takes), and every ticket was given back.
        assert admission.peak_over_s <= 1e-9
        assert admission.open_tickets == 0 and admission.backlog_s == 0
        for cid in acked:
            stored = {t["turn_id"]: t["status"] for t in client.get(f"/v1/conversations/{cid}").json()["turns"]}
            assert set(stored) == acked[cid] and set(stored.values()) == {"processed"}, stored
        assert services.metrics.value("assist_admit_turns_total", outcome="refused") == n_busy
