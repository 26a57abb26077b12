"""POST /v1/replay through the real app: upload, streamed progress, report; same metrics as the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from replay_build import DEMO_LOGS, Loaded

from assist.cli import main
from assist.settings import Settings


@pytest.fixture(scope="module")
def client(demo: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from assist.service.app import create_app

    var = tmp_path_factory.mktemp("var-rest")
    settings = Settings(shop_dir=demo.settings.shop_dir, var_dir=var, models_dir=demo.settings.models_dir)
    with TestClient(create_app(settings, runtime=demo.runtime)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").json()
            time.sleep(0.05)
        yield c


def _events(client: TestClient, url: str, headers: dict[str, str] | None = None) -> list[tuple[int, str, Any]]:
    out = []
    with client.stream("GET", url, headers=headers or {}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in r.iter_lines():
            if not line:
                if block:
                    out.append((int(block["id"]), block["event"], json.loads(block["data"])))
                block = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                block[k] = v
    return out


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    # Timings differ between any two runs; everything else must be identical.
    return {k: v for k, v in summary.items() if not k.startswith("latency.")}


def test_post_replay_streams_progress_and_matches_the_cli(client: TestClient, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          reuse_runtime: None) -> None:
    body = DEMO_LOGS.read_bytes()
    r = client.post("/v1/replay?name=demo.jsonl", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["input"]["conversations"] == 4
    assert job["input"]["source"] == "demo.jsonl" and job["report"] is None

    events = _events(client, job["links"]["events"])
    kinds = [k for _, k, _ in events]
    assert kinds[-1] == "done" and kinds.count("progress") == 4
    assert [i for i, _, _ in events] == list(range(len(events)))
    assert [d["done"] for _, k, d in events if k == "progress"] == [1, 2, 3, 4]

    status = client.get(job["links"]["self"]).json()
    assert status["status"] == "done" and status["progress"]["done"] == 4
    rest_report = status["report"]
    assert rest_report["format"] == "assist-replay-report"

    # The same logs through `assist replay` on the same shop: identical metrics.
    assert main(["replay", str(DEMO_LOGS), "--out", str(tmp_path), "--json"]) == main(
        ["replay", str(DEMO_LOGS), "--out", str(tmp_path), "--json"])
    capsys.readouterr()
    cli_report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert _comparable(rest_report["summary"]) == _comparable(cli_report["summary"])
    strip = ("latency",)
    assert {k: v for k, v in rest_report["metrics"].items() if k not in strip} == {
        k: v for k, v in cli_report["metrics"].items() if k not in strip}
    assert rest_report["errors"] == cli_report["errors"]

    # Late subscribers get the whole history; Last-Event-ID resumes after it.
    again = _events(client, job["links"]["events"], {"Last-Event-ID": "2"})
    assert [i for i, _, _ in again] == list(range(3, len(events)))

    html = client.get(job["links"]["report_html"])
    assert html.status_code == 200 and 'data-chart="intent-confusion"' in html.text
    turns = client.get(job["links"]["turns"]).text.splitlines()
    assert len(turns) == sum(len(json.loads(x)["turns"]) for x in body.decode().splitlines())


def test_multipart_upload_and_line_problems(client: TestClient) -> None:
    lines = DEMO_LOGS.read_text(encoding="utf-8").splitlines()
    logs = "\n".join([lines[0], '{"conversation_id": "x", "turns": []}', lines[2]]) + "\n"
    r = client.post("/v1/replay", files={"file": ("mine.jsonl", logs.encode(), "application/x-ndjson")})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["input"]["source"] == "mine.jsonl" and job["input"]["conversations"] == 2
    assert [(p["line"], p["field"]) for p in job["input"]["problems"]] == [(2, "turns")]
    events = _events(client, job["links"]["events"])
    assert events[-1][1] == "done" and events[-1][2]["summary"]["input.skipped_lines"] == 1
    listed = client.get("/v1/replay").json()
    assert job["id"] in [j["id"] for j in listed]


def test_replay_errors(client: TestClient) -> None:
    r = client.post("/v1/replay", content=b"", headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["code"] == "replay.invalid"
    r = client.post("/v1/replay", content=b"{nope\n[]\n", headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["code"] == "replay.invalid"
    assert [d["line"] for d in r.json()["details"]] == [1, 2]
    r = client.get("/v1/replay/doesnotexist")
    assert r.status_code == 404 and r.json()["code"] == "replay.not_found"
    assert client.get("/v1/replay/doesnotexist/events").json()["code"] == "replay.not_found"
