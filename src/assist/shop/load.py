"""Load and validate a shop directory (DESIGN §3).

Every record is validated; every problem is reported with file, line and field, and a
file with any bad record is refused as a whole: one bad record never silently disappears.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from assist.errors import DataFileError, RecordProblem
from assist.shop.models import CatalogItem, CrossSellRelation, KbEntry

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Shop:
    """One shop's data, validated and cross-checked."""

    root: Path | None
    kb: tuple[KbEntry, ...]
    catalog: dict[str, CatalogItem]
    cross_sell: tuple[CrossSellRelation, ...]
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def published_kb(self) -> list[KbEntry]:
        return [e for e in self.kb if e.published]

    @property
    def content_hash(self) -> str:
        """Hash of everything that shapes the search index (published KB entries)."""
        h = hashlib.sha256()
        for e in sorted(self.published_kb, key=lambda e: e.id):
            h.update(e.model_dump_json().encode())
        return h.hexdigest()[:16]


def _problems_from(exc: PydanticValidationError, file: str, line: int) -> list[RecordProblem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<record>"
        out.append(RecordProblem(file, line, loc, err["msg"]))
    return out


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any, RecordProblem | None]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw), None
            except json.JSONDecodeError as exc:
                yield lineno, None, RecordProblem(str(path), lineno, "<json>", exc.msg)


def _yaml_records(path: Path) -> Iterator[tuple[int, Any, RecordProblem | None]]:
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        yield (mark.line + 1 if mark else 0), None, RecordProblem(str(path), mark.line + 1 if mark else 0,
                                                                  "<yaml>", str(exc))
        return
    if root is None:
        return
    if not isinstance(root, yaml.SequenceNode):
        yield 1, None, RecordProblem(str(path), 1, "<yaml>", "top level must be a list of records")
        return
    for node in root.value:
        line = node.start_mark.line + 1
        yield line, yaml.SafeLoader(yaml.serialize(node)).get_single_data(), None


def read_records(path: Path, model: type[M]) -> list[tuple[int, M]]:
    """Parse and validate every record of a JSONL or YAML file; raise DataFileError listing all problems."""
    good, problems = _read(path, model)
    if problems:
        raise DataFileError(problems)
    return good


def _read(path: Path, model: type[M]) -> tuple[list[tuple[int, M]], list[RecordProblem]]:
    if not path.exists():
        return [], [RecordProblem(str(path), 0, "<file>", "file not found")]
    reader = _yaml_records if path.suffix in {".yaml", ".yml"} else _jsonl_records
    good: list[tuple[int, M]] = []
    problems: list[RecordProblem] = []
    for line, obj, problem in reader(path):
        if problem:
            problems.append(problem)
            continue
        if not isinstance(obj, dict):
            problems.append(RecordProblem(str(path), line, "<record>", "record must be an object"))
            continue
        try:
            good.append((line, model.model_validate(obj)))
        except PydanticValidationError as exc:
            problems.extend(_problems_from(exc, str(path), line))
    return good, problems


def _find(root: Path, stem: str, required: bool = True) -> Path | None:
    for suffix in (".jsonl", ".yaml", ".yml"):
        p = root / f"{stem}{suffix}"
        if p.exists():
            return p
    if required:
        raise DataFileError([RecordProblem(str(root / f"{stem}.jsonl"), 0, "<file>", "file not found")])
    return None


def _kb_lines(path: Path) -> list[tuple[int, KbEntry]]:
    records, problems = _read(path, KbEntry)
    seen: dict[str, int] = {}
    for line, e in records:
        if e.id in seen:
            problems.append(RecordProblem(str(path), line, "id", f"duplicate id {e.id!r} (first on line {seen[e.id]})"))
        seen.setdefault(e.id, line)
    if problems:
        raise DataFileError(problems)
    return records


def load_kb(path: Path) -> list[KbEntry]:
    return [e for _, e in _kb_lines(path)]


def load_catalog(path: Path) -> dict[str, CatalogItem]:
    records = read_records(path, CatalogItem)
    out: dict[str, CatalogItem] = {}
    problems = []
    for line, item in records:
        if item.sku in out:
            problems.append(RecordProblem(str(path), line, "sku", f"duplicate sku {item.sku!r}"))
        out[item.sku] = item
    if problems:
        raise DataFileError(problems)
    return out


def load_cross_sell(path: Path) -> list[CrossSellRelation]:
    return [r for _, r in read_records(path, CrossSellRelation)]


def _cross_check(
    kb_path: Path, kb_lines: list[tuple[int, KbEntry]], cs_path: Path | None,
    cs_lines: list[tuple[int, CrossSellRelation]], catalog: dict[str, CatalogItem],
) -> list[RecordProblem]:
    problems = []
    categories = {c.category for c in catalog.values()}
    for line, e in kb_lines:
        for i, sku in enumerate(e.skus):
            if sku not in catalog:
                problems.append(RecordProblem(str(kb_path), line, f"skus.{i}", f"unknown sku {sku!r}"))
    for line, r in cs_lines:
        if r.to not in catalog:
            problems.append(RecordProblem(str(cs_path), line, "to", f"unknown sku {r.to!r}"))
        cat = r.from_category
        if cat is None and r.from_ not in catalog:
            problems.append(RecordProblem(str(cs_path), line, "from", f"unknown sku {r.from_!r}"))
        if cat is not None and not any(c == cat or c.startswith(cat + "/") for c in categories):
            problems.append(RecordProblem(str(cs_path), line, "from", f"no catalog item in category {cat!r}"))
    return problems


def load_shop(root: Path) -> Shop:
    """Load a shop directory: kb, catalog, cross_sell (required) and policy.yaml (optional).

    Raises DataFileError listing every problem in every file, so one run shows them all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFileError([RecordProblem(str(root), 0, "<dir>", "shop directory not found")])
    problems: list[RecordProblem] = []
    kb_lines: list[tuple[int, KbEntry]] = []
    cs_lines: list[tuple[int, CrossSellRelation]] = []
    catalog: dict[str, CatalogItem] = {}
    kb_path = cs_path = None
    try:
        kb_path = _find(root, "kb")
        kb_lines = _kb_lines(kb_path)
    except DataFileError as exc:
        problems.extend(exc.problems)
    try:
        cat_path = _find(root, "catalog")
        assert cat_path is not None
        catalog = load_catalog(cat_path)
    except DataFileError as exc:
        problems.extend(exc.problems)
    try:
        cs_path = _find(root, "cross_sell")
        assert cs_path is not None
        cs_lines = read_records(cs_path, CrossSellRelation)
    except DataFileError as exc:
        problems.extend(exc.problems)
    policy: dict[str, Any] = {}
    policy_path = root / "policy.yaml"
    if policy_path.exists():
        try:
            policy = yaml.safe_load(policy_path.read_text(encoding="utf-8")) or {}
            if not isinstance(policy, dict):
                problems.append(RecordProblem(str(policy_path), 1, "<yaml>", "top level must be a mapping"))
                policy = {}
        except yaml.YAMLError as exc:
            problems.append(RecordProblem(str(policy_path), 0, "<yaml>", str(exc)))
    if not problems and kb_path is not None:
        problems.extend(_cross_check(kb_path, kb_lines, cs_path, cs_lines, catalog))
    if problems:
        raise DataFileError(problems)
    return Shop(root=root, kb=tuple(e for _, e in kb_lines), catalog=catalog,
                cross_sell=tuple(r for _, r in cs_lines), policy=policy)


def validate_shop(root: Path) -> list[RecordProblem]:
    """Every problem of a shop directory, or an empty list."""
    try:
        load_shop(root)
    except DataFileError as exc:
        return exc.problems
    return []
