"""An acknowledged turn survives a SIGKILL of the server (real uvicorn, real socket, real process).

``assist serve`` runs as a subprocess on a free loopback port with a temporary SQLite database.
The test sends a turn and SIGKILLs the server the moment the ``ack`` arrives — before the analysis,
in practice, since the ack is sent as soon as the turn is committed. A new server on the same
database must show the turn in the transcript and process it during start-up recovery.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextmanager
def server(db: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {**os.environ, "ASSIST_DATABASE_URL": f"sqlite+aiosqlite:///{db}", "ASSIST_ENV": "test",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "assist.cli", "serve", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if _get(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_acked_turn_survives_sigkill(tmp_path: Path, runtime: Any) -> None:
    # ``runtime`` is not used directly: loading it first builds the session's KB index in
    # ASSIST_VAR_DIR, which the server subprocesses inherit and load instead of rebuilding.
    db, log = tmp_path / "assist.db", tmp_path / "server.log"
    with server(db, log) as (proc, base):
        with connect(base.replace("http", "ws") + "/v1/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "v": 1, "conversation_id": "kill-1"}))
            assert json.loads(ws.recv(timeout=10))["ref"] == "hello"
            ws.send(json.dumps({"type": "turn", "v": 1, "turn_id": "k1", "role": "customer",
                                "text": "宝宝晚上穿纸尿裤老是侧漏怎么办"}))
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "ack" and frame.get("turn_id") == "k1":
                    os.kill(proc.pid, signal.SIGKILL)  # the instant the turn is acknowledged
                    break
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

    with server(db, log) as (_proc, base):
        status, transcript = _get(base + "/v1/conversations/kill-1")
        assert status == 200, transcript
        (t,) = transcript["turns"]
        assert t["turn_id"] == "k1" and t["text"] == "宝宝晚上穿纸尿裤老是侧漏怎么办"
        # Processed by start-up recovery (or, if the kill came late, before it): never lost, never twice.
        assert t["status"] == "processed" and t["analysis"]["intent"]["label"]
        with connect(base.replace("http", "ws") + "/v1/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "v": 1, "conversation_id": "kill-1"}))
            assert json.loads(ws.recv(timeout=10))["last_seq"] == 2
            ws.send(json.dumps({"type": "resume", "v": 1, "last_seq": 0}))
            replay = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
            assert [(f["seq"], f["type"]) for f in replay] == [(1, "ack"), (2, "analysis")]
            assert replay[1]["turn_id"] == "k1"
