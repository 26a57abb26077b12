"""Persistence across a restart: a new app on the same database restores transcript, state and seq."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_build import hello, make_settings, recv, serve, turn


def test_transcript_state_and_frames_survive_a_restart(tmp_path: Path, runtime: Any) -> None:
    settings = make_settings(tmp_path / "assist.db")
    customer = {"id": "u-restart", "tier": "vip", "orders": []}
    with serve(settings, runtime) as client, client.websocket_connect("/v1/ws") as ws:
        hello(ws, "restart-1", customer=customer)
        frames: list[dict[str, Any]] = []
        for i, (role, text) in enumerate([("customer", "纸尿裤尺码怎么选？宝宝20斤"),
                                          ("agent", "亲，20斤建议选L码哦"),
                                          ("customer", "好的谢谢")], 1):
            frames += turn(ws, f"t{i}", text, role=role)
        before = client.get("/v1/conversations/restart-1").json()

    with serve(settings, runtime) as client:
        after = client.get("/v1/conversations/restart-1").json()
        assert after == before
        assert after["state"]["customer"]["tier"] == "vip" and after["state"]["customer_turns"] == 2
        with client.websocket_connect("/v1/ws") as ws:
            ack = hello(ws, "restart-1")
            assert ack["last_seq"] == len(frames) == 6
            ws.send_json({"type": "resume", "v": 1, "last_seq": 0})
            assert [recv(ws) for _ in frames] == frames  # every frame, byte for byte
            # The conversation continues where it stopped: state and seq.
            a, b = turn(ws, "t4", "再问一下拉拉裤和纸尿裤的区别")
            assert (a["seq"], b["seq"]) == (7, 8)
            assert b["state"]["customer_turns"] == 3
            # A turn id from before the restart is still recognised (a resend: the same message).
            ws.send_json({"type": "turn", "v": 1, "turn_id": "t1", "role": "customer", "text": "纸尿裤尺码怎么选？宝宝20斤"})
            assert recv(ws)["duplicate"] is True and recv(ws) == frames[1]
