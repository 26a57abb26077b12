from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assist.understanding.dense import DenseIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    # Clustered vectors resemble sentence embeddings better than uniform noise does.
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 25, 1), dim))
    return _unit(centres[rng.integers(0, len(centres), n)] + 0.4 * rng.standard_normal((n, dim)))


def _brute(ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = vecs @ q
    return ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_flat_search_is_exact_and_ids_are_kept() -> None:
    vecs = _clustered(300, 16)
    ids = np.arange(1000, 1300)
    index = DenseIndex(16)
    index.add(ids, vecs)
    assert index.kind == "flat" and index.description == "IndexFlatIP" and len(index) == 300
    q = vecs[17]
    got, scores = index.search(q, 5)
    assert got.tolist() == _brute(ids, vecs, q, 5)
    assert got[0] == 1017 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert (np.diff(scores) <= 1e-6).all()


def test_remove_update_and_readd() -> None:
    vecs = _clustered(50, 8)
    index = DenseIndex(8, rebuild_fraction=0.9)
    index.add(range(50), vecs)
    index.remove([3])
    assert 3 not in index and len(index) == 49
    got, _ = index.search(vecs[3], 50)
    assert 3 not in got.tolist() and got.size == 49
    index.update([4], vecs[10:11])  # id 4 now points at vector 10
    assert np.allclose(index.vectors([4])[0], vecs[10], atol=1e-6)
    index.add([3], vecs[3:4])
    assert index.search(vecs[3], 1)[0].tolist() == [3]
    with pytest.raises(KeyError):
        index.vectors([999])


def test_tombstones_trigger_a_rebuild() -> None:
    vecs = _clustered(100, 8)
    index = DenseIndex(8, rebuild_fraction=0.2)
    index.add(range(100), vecs)
    index.remove(range(15))
    assert index._index.ntotal == 100  # tombstoned, not yet rebuilt
    index.remove(range(15, 30))
    assert index._index.ntotal == 70  # past 20 %: rebuilt from the stored vectors
    assert index.search(vecs[50], 1)[0].tolist() == [50]


def test_hnsw_above_threshold_with_good_recall_and_tombstones() -> None:
    dim = 32
    vecs = _clustered(3000, dim)
    index = DenseIndex(dim, hnsw_threshold=1000, rebuild_fraction=0.5)
    index.add(range(500), vecs[:500])
    assert index.kind == "flat"
    index.add(range(500, 3000), vecs[500:])  # crosses the threshold: rebuilt as a graph
    assert index.kind == "hnsw" and index.description.startswith("IndexHNSWFlat")
    rng = np.random.default_rng(1)
    queries = _unit(vecs[rng.integers(0, 3000, 50)] + 0.2 * rng.standard_normal((50, dim)))
    ids = np.arange(3000)
    recall = np.mean([
        len(set(index.search(q, 10)[0].tolist()) & set(_brute(ids, vecs, q, 10))) / 10 for q in queries
    ])
    assert recall > 0.9
    # HNSW cannot delete: removed ids are tombstones filtered out with over-fetch.
    dead = set(range(0, 3000, 4))
    index.remove(sorted(dead))
    for q in queries[:10]:
        got, _ = index.search(q, 10)
        assert got.size == 10 and not dead & set(got.tolist())


def test_allow_mask_filters_both_index_types() -> None:
    dim = 16
    vecs = _clustered(6000, dim)
    allow = np.zeros(6000, dtype=bool)
    allow[::2] = True  # 3000 allowed: the exact path on flat, bitmap-filtered graph walk on HNSW
    for threshold in (100_000, 1000):
        index = DenseIndex(dim, hnsw_threshold=threshold)
        index.add(range(6000), vecs)
        got, _ = index.search(vecs[1], 10, allow=allow)
        assert got.size == 10 and all(i % 2 == 0 for i in got.tolist())
        few = np.zeros(6000, dtype=bool)
        few[[5, 7]] = True  # a narrow filter: exact scoring of just those
        assert sorted(index.search(vecs[5], 10, allow=few)[0].tolist()) == [5, 7]
    assert index.kind == "hnsw"
    wide = np.ones(6000, dtype=bool)
    wide[::3] = False  # 4000 allowed: above the exact-path limit, uses the FAISS selector
    got, _ = index.search(vecs[1], 10, allow=wide)
    assert got.size == 10 and all(i % 3 for i in got.tolist())


@pytest.mark.parametrize(("threshold", "storage"), [(10_000, "flat"), (100, "flat"), (100, "sq8")])
def test_save_and_load_round_trip(tmp_path: Path, threshold: int, storage: str) -> None:
    vecs = _clustered(400, 16)
    index = DenseIndex(16, hnsw_threshold=threshold, storage=storage, rebuild_fraction=0.9)  # type: ignore[arg-type]
    index.add(range(400), vecs)
    index.remove([1, 2, 3])
    index.save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    assert loaded.kind == index.kind and loaded.description == index.description and len(loaded) == 397
    for q in vecs[:20]:
        a, _ = index.search(q, 5)
        b, _ = loaded.search(q, 5)
        assert a.tolist() == b.tolist()
    assert 1 not in loaded and 4 in loaded


def test_bad_input_is_refused() -> None:
    index = DenseIndex(8)
    with pytest.raises(ValueError):
        index.add([1, 2], _clustered(3, 8))
    with pytest.raises(ValueError):
        index.add([1, 1], _clustered(2, 8))
    with pytest.raises(ValueError):
        DenseIndex(8, storage="pq")  # type: ignore[arg-type]
    assert index.search(_clustered(1, 8)[0], 5)[0].size == 0
