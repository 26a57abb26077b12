from __future__ import annotations

import json
from pathlib import Path

import pytest

from assist.errors import DataFileError
from assist.shop import load_kb, load_shop, validate_shop
from assist.shop.models import KbStatus


def _write_jsonl(path: Path, rows: list[dict | str]) -> None:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )


def _shop(tmp_path: Path, kb: list, catalog: list | None = None, cross: list | None = None) -> Path:
    _write_jsonl(tmp_path / "kb.jsonl", kb)
    _write_jsonl(tmp_path / "catalog.jsonl", catalog if catalog is not None else [
        {"sku": "A1", "name": "贝舒纸尿裤 M码", "category": "母婴/纸尿裤", "price": 99, "stock": 5, "consumable": True},
        {"sku": "B1", "name": "护臀霜 50g", "category": "母婴/护臀霜", "price": 39, "stock": 5, "consumable": True},
    ])
    _write_jsonl(tmp_path / "cross_sell.jsonl", cross if cross is not None else [
        {"from": "category:母婴/纸尿裤", "to": "B1", "reason": "r", "script": "s", "triggers": ["红屁屁"]},
    ])
    return tmp_path


GOOD = {"id": "e1", "question": "纸尿裤怎么选", "similar": ["尿不湿买多大"], "answer": "按体重选。",
        "category": "母婴/纸尿裤", "skus": ["A1"], "status": "published"}


def test_demo_shop_loads_and_meets_the_size_floor() -> None:
    shop = load_shop(Path(__file__).resolve().parents[2] / "kb_data")
    published = shop.published_kb
    assert len(published) >= 150
    assert all(len(e.similar) >= 2 for e in published)
    assert len(shop.catalog) >= 60
    assert len(shop.cross_sell) >= 40
    assert {e.status for e in shop.kb} >= {KbStatus.published}


def test_every_bad_record_is_reported_with_file_line_field(tmp_path: Path) -> None:
    root = _shop(tmp_path, [
        GOOD,
        "{not json",
        {**GOOD, "id": "e2", "answer": ""},
        {**GOOD, "id": "e3", "status": "live"},
        {**GOOD, "id": "e1"},
    ])
    with pytest.raises(DataFileError) as exc:
        load_shop(root)
    problems = exc.value.problems
    where = {(p.line, p.field) for p in problems}
    assert (2, "<json>") in where
    assert (3, "answer") in where
    assert (4, "status") in where
    assert (5, "id") in where  # duplicate id
    assert all(p.file.endswith("kb.jsonl") for p in problems)
    assert exc.value.code == "data.invalid"


def test_unknown_references_are_refused(tmp_path: Path) -> None:
    root = _shop(tmp_path, [{**GOOD, "skus": ["NOPE"]}],
                 cross=[{"from": "X9", "to": "B1", "reason": "r", "script": "s"}])
    problems = validate_shop(root)
    fields = {(Path(p.file).name, p.field) for p in problems}
    assert ("kb.jsonl", "skus.0") in fields
    assert ("cross_sell.jsonl", "from") in fields


def test_yaml_kb_reports_record_lines(tmp_path: Path) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text(
        "- id: ok1\n  question: 发票怎么开\n  answer: 确认收货后申请。\n"
        "- id: bad\n  question: 退货\n  answer: ''\n",
        encoding="utf-8",
    )
    with pytest.raises(DataFileError) as exc:
        load_kb(path)
    assert [(p.line, p.field) for p in exc.value.problems] == [(4, "answer")]


def test_missing_files_are_named(tmp_path: Path) -> None:
    problems = validate_shop(tmp_path)
    names = {Path(p.file).name for p in problems}
    assert {"kb.jsonl", "catalog.jsonl", "cross_sell.jsonl"} <= names


def test_content_hash_follows_published_entries_only(tmp_path: Path) -> None:
    a = load_shop(_shop(tmp_path, [GOOD, {**GOOD, "id": "d1", "status": "draft"}]))
    b = load_shop(_shop(tmp_path, [GOOD, {**GOOD, "id": "d1", "status": "draft", "answer": "改了"}]))
    c = load_shop(_shop(tmp_path, [{**GOOD, "answer": "新答案"}]))
    assert a.content_hash == b.content_hash != c.content_hash
