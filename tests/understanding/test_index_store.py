from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrieval_support import MemoEncoder, e5, e5_memo, kb_entries, prime, tokeniser

from assist.errors import IndexError_, StaleIndexError
from assist.shop import KbEntry
from assist.understanding.index_store import (
    FORMAT_VERSION,
    load_index,
    load_or_build,
    read_manifest,
    save_index,
)
from assist.understanding.retrieve import HybridRetriever, kb_content_hash

QUERIES = ["热水器显示E1", "宝宝屁屁红了", "发票怎么开", "耳机一边没声音", "X20能带上飞机吗"]


GIFT_WRAP = KbEntry(id="dp-gift-wrap", question="可以帮忙包装成礼物吗？", answer="下单备注「礼品包装」即可，免费。",
                    category="店铺/服务")


@pytest.fixture(scope="module", autouse=True)
def _primed() -> None:
    prime([*QUERIES, "能不能包成礼物送人"], [GIFT_WRAP])


def build(**kwargs: object) -> HybridRetriever:
    return HybridRetriever(kb_entries(), e5_memo(), tokeniser().tokenise, **kwargs)  # type: ignore[arg-type]


def _hits(r: HybridRetriever) -> list[list[tuple[str, float]]]:
    return [[(h.kb_id, h.score) for h in r.search_text(q).hits] for q in QUERIES]


def _same_hits(a: HybridRetriever, b: HybridRetriever | list[list[tuple[str, float]]]) -> bool:
    """Same entries in the same order, scores equal but for BM25's one-byte weights: a freshly
    built small index scores its documents exactly (delta buffer), a loaded one from the matrix."""
    want = _hits(b) if isinstance(b, HybridRetriever) else b
    got = _hits(a)
    return [[i for i, _ in q] for q in got] == [[i for i, _ in q] for q in want] and all(
        abs(x - y) < 0.005 for gq, wq in zip(got, want, strict=True) for (_, x), (_, y) in zip(gq, wq, strict=True))


def test_kb_hash_is_the_shop_content_hash() -> None:
    from assist.shop import Shop

    shop = Shop(root=None, kb=kb_entries(), catalog={}, cross_sell=())
    assert kb_content_hash(kb_entries()) == shop.content_hash == build().content_hash


def test_round_trip_gives_the_same_results(tmp_path: Path) -> None:
    r = build()
    manifest = save_index(r, tmp_path / "index", fingerprint="dict-v1")
    assert manifest == read_manifest(tmp_path / "index")
    assert manifest.format_version == FORMAT_VERSION and manifest.encoder == e5().name and manifest.dim == 384
    assert manifest.n_entries == 33 and manifest.n_units == r.unit_count and manifest.index_type == "IndexFlatIP"
    assert manifest.kb_hash == kb_content_hash(kb_entries()) and manifest.created_at
    loaded = load_index(tmp_path / "index", e5_memo(), tokeniser().tokenise, kb_hash=manifest.kb_hash,
                        fingerprint="dict-v1")
    assert len(loaded) == 33 and loaded.unit_count == r.unit_count
    assert _same_hits(loaded, r)
    assert not {p.name for p in tmp_path.iterdir()} - {"index"}  # no temporary directories left


def test_a_loaded_index_reads_entries_from_its_file_even_after_the_directory_is_replaced(tmp_path: Path) -> None:
    r = build()
    save_index(r, tmp_path / "index")
    loaded = load_index(tmp_path / "index", e5_memo(), tokeniser().tokenise)
    want = _hits(r)
    assert all(s.source is not None and not s.packed for s in loaded._by_id.values())  # bodies stay on disk
    assert loaded.get("my-dp-rash") == r.get("my-dp-rash") is not None
    # A later save (say, another replica's) replaces the directory; the open file still serves.
    other = build()
    other.retire("dp-invoice")
    save_index(other, tmp_path / "index")
    assert _same_hits(loaded, want) and "dp-invoice" in loaded
    # An edit after loading is kept in memory, next to the entries read from the file.
    loaded.upsert(GIFT_WRAP)
    assert loaded._by_id["dp-gift-wrap"].source is None
    assert loaded.search_text("能不能包成礼物送人").hits[0].kb_id == "dp-gift-wrap"
    assert loaded.content_hash == kb_content_hash([*kb_entries(), GIFT_WRAP])


def test_incremental_changes_survive_a_save(tmp_path: Path) -> None:
    r = build(hnsw_threshold=50)  # the HNSW index type persists too
    assert r.index_type.startswith("IndexHNSW")
    r.retire("dp-invoice")
    r.upsert(GIFT_WRAP)
    save_index(r, tmp_path)
    loaded = load_index(tmp_path, e5_memo(), tokeniser().tokenise, kb_hash=r.content_hash)
    assert "dp-invoice" not in loaded and "dp-gift-wrap" in loaded
    assert loaded.search_text("能不能包成礼物送人").hits[0].kb_id == "dp-gift-wrap"
    assert loaded.index_type == r.index_type
    # and the loaded retriever keeps accepting updates
    loaded.retire("dp-gift-wrap")
    assert "dp-gift-wrap" not in [h.kb_id for h in loaded.search_text("能不能包成礼物送人").hits]


def test_a_stale_index_is_refused_naming_what_differs(tmp_path: Path) -> None:
    save_index(build(), tmp_path, fingerprint="dict-v1")
    tok = tokeniser().tokenise
    with pytest.raises(StaleIndexError) as err:
        load_index(tmp_path, e5_memo(), tok, kb_hash="0123456789abcdef")
    assert err.value.code == "index.stale" and "kb_hash" in err.value.message
    assert err.value.details == {"kb_hash": {"index": kb_content_hash(kb_entries()), "expected": "0123456789abcdef"}}
    other = MemoEncoder(e5())
    other.name = "some/other-384d-model"
    with pytest.raises(StaleIndexError) as err:
        load_index(tmp_path, other, tok)
    assert set(err.value.details) == {"encoder"} and "some/other-384d-model" in err.value.message
    with pytest.raises(StaleIndexError, match="fingerprint"):
        load_index(tmp_path, e5_memo(), tok, fingerprint="dict-v2")

    wide = MemoEncoder(e5())
    wide.dim = 768  # same name, other dimension (e.g. a model swapped under one name)
    with pytest.raises(StaleIndexError) as err:
        load_index(tmp_path, wide, tok)
    assert set(err.value.details) == {"dim"}

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(StaleIndexError, match="format_version"):
        load_index(tmp_path, e5_memo(), tok)


def test_missing_or_damaged_indexes_are_index_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="no index"):
        load_index(tmp_path / "nothing", e5_memo(), tokeniser().tokenise)
    save_index(build(), tmp_path)
    (tmp_path / "dense.faiss").unlink()
    with pytest.raises(IndexError_, match="damaged"):
        load_index(tmp_path, e5_memo(), tokeniser().tokenise)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexError_, match="unreadable"):
        load_index(tmp_path, e5_memo(), tokeniser().tokenise)


def test_load_or_build_rebuilds_only_when_needed(tmp_path: Path) -> None:
    entries = list(kb_entries())
    tok = tokeniser().tokenise
    first, built = load_or_build(tmp_path / "idx", entries, e5_memo(), tok)
    assert built and (tmp_path / "idx" / "manifest.json").exists()
    again, built = load_or_build(tmp_path / "idx", entries, e5_memo(), tok)
    assert not built and _same_hits(again, first)
    edited = [e.model_copy(update={"answer": e.answer + "（已更新）", "version": e.version + 1})
              if e.id == "dp-invoice" else e for e in entries]
    updated, built = load_or_build(tmp_path / "idx", edited, e5_memo(), tok)
    assert built and updated.get("dp-invoice").version == 2  # type: ignore[union-attr]
    assert read_manifest(tmp_path / "idx").kb_hash == kb_content_hash(edited)
