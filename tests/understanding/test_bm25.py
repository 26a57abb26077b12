from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from retrieval_support import kb_entries, tokeniser

from assist.understanding.bm25 import DEFAULT_STOPWORDS, BM25Index, is_indexable


def _naive_bm25(docs: dict[int, list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    """Textbook BM25 straight from the formula, as the reference."""
    docs = {i: [t for t in d if is_indexable(t)] for i, d in docs.items()}
    n = len(docs)
    avgdl = sum(len(d) for d in docs.values()) / n
    df = Counter(t for d in docs.values() for t in set(d))
    out = {}
    for i, d in docs.items():
        tf = Counter(d)
        s = 0.0
        for t in set(q for q in query if is_indexable(q)):
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
        if s > 0:
            out[i] = s
    return out


def _random_docs(n: int, seed: int = 0) -> dict[int, list[str]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)]
    return {i: rng.choices(vocab[:30] + vocab, k=rng.randint(2, 12)) for i in range(n)}


def _as_dict(index: BM25Index, query: list[str]) -> dict[int, float]:
    res = index.score(query)
    return dict(zip(res.ids.tolist(), res.scores.tolist(), strict=True))


def _quantised(index: BM25Index, query: list[str]) -> float:
    """The most a score can move by the main segment's one-byte tf weights: half a step per term."""
    return index.score(query).upper / (2 * 255)


def _assert_close(got: dict[int, float], want: dict[int, float], rel: float = 1e-4, abs_: float = 0.0) -> None:
    assert set(got) == set(want)
    for i, v in want.items():
        assert got[i] == pytest.approx(v, rel=rel, abs=abs_)


def test_scores_match_the_formula_after_a_bulk_build() -> None:
    docs = _random_docs(400)
    index = BM25Index(delta_max=64)  # 400 documents > delta_max: they go straight to the main segment
    index.add_many(docs.items())
    for query in (["w1", "w2", "w40"], ["w3"], ["w299", "w5", "w5"]):
        _assert_close(_as_dict(index, query), _naive_bm25(docs, query), rel=0, abs_=_quantised(index, query))


def test_one_byte_weights_keep_the_exact_ranking_apart_from_near_ties() -> None:
    docs = _random_docs(2000, seed=3)
    index = BM25Index(delta_max=64)
    index.add_many(docs.items())
    rng = random.Random(5)
    for _ in range(50):
        query = rng.sample([f"w{i}" for i in range(300)], 3)
        want = sorted(_naive_bm25(docs, query).items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        got = index.search(query, k=10)
        tol = 2 * _quantised(index, query)
        for (gid, _), (wid, wscore) in zip(got, want, strict=True):
            # The same document, or one whose exact score is within the quantisation bound.
            assert gid == wid or abs(_naive_bm25(docs, query)[gid] - wscore) <= tol


def test_incremental_adds_and_removes_match_a_fresh_build() -> None:
    docs = _random_docs(300, seed=1)
    index = BM25Index(delta_max=16)  # small buffer: exercises the delta path and several folds
    index.add_many(list(docs.items())[:200])
    for i in range(200, 300):
        index.add(i, docs[i])
    for i in range(0, 300, 3):
        assert index.remove(i)
        del docs[i]
    assert not index.remove(0)
    assert len(index) == len(docs)
    # Unfolded tf weights use a slightly stale avgdl; that is the documented approximation.
    _assert_close(_as_dict(index, ["w1", "w7", "w100"]), _naive_bm25(docs, ["w1", "w7", "w100"]), rel=0.05)
    index.fold()
    query = ["w1", "w7", "w100"]
    _assert_close(_as_dict(index, query), _naive_bm25(docs, query), rel=0, abs_=_quantised(index, query))


def test_added_document_is_found_and_removed_one_is_not() -> None:
    index = BM25Index()
    index.add_many(_random_docs(50).items())
    index.add(1000, ["独一无二", "的", "词"])
    assert index.search(["独一无二"], 3)[0][0] == 1000
    index.remove(1000)
    assert index.search(["独一无二"], 3) == []
    index.add(1000, ["另一个", "词"])  # id reuse after removal
    assert index.search(["另一个"], 1)[0][0] == 1000


def test_replacing_a_document_keeps_one_copy() -> None:
    index = BM25Index()
    index.add(7, ["苹果", "香蕉"])
    index.add(7, ["橙子"])
    assert len(index) == 1
    assert index.search(["苹果"], 5) == []
    assert index.search(["橙子"], 5)[0][0] == 7


def test_stop_words_and_punctuation_do_not_match() -> None:
    index = BM25Index()
    index.add_many([(0, ["纸尿裤", "的", "尺码", "吗", "？"]), (1, ["奶粉", "的", "吗", "？"])])
    assert index.score(["的", "了", "吗", "？", "!!"]).ids.size == 0
    # Stop words neither add score nor change which documents match.
    _assert_close(_as_dict(index, ["纸尿裤", "的", "吗", "？"]), _as_dict(index, ["纸尿裤"]))
    assert {"的", "了", "吗"} <= DEFAULT_STOPWORDS
    assert "不" not in DEFAULT_STOPWORDS  # negation matters: 充不进电


def test_coverage_and_upper_bound() -> None:
    index = BM25Index()
    index.add_many([(0, ["热水器", "e1", "故障"]), (1, ["热水器", "安装"]), (2, ["奶粉"])])
    index.add(3, ["热水器", "e1", "e4"])  # one document in the delta buffer
    res = index.score(["热水器", "e1"])
    cov = res.coverage(np.array([0, 1, 2, 3, 99]))
    assert cov[0] == pytest.approx(1.0) and cov[3] == pytest.approx(1.0)
    assert 0 < cov[1] < 0.5  # only the common word, which carries little idf
    assert cov[2] == 0 and cov[4] == 0  # no query word; unknown id
    assert (res.scores <= res.upper).all()
    assert res.terms == ("热水器", "e1")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    docs = _random_docs(120, seed=3)
    index = BM25Index(delta_max=8)
    index.add_many(list(docs.items())[:100])
    for i in range(100, 120):
        index.add(i, docs[i])  # some still in the delta buffer when saved
    index.remove(5)
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert len(loaded) == len(index)
    index.fold()
    _assert_close(_as_dict(loaded, ["w2", "w9"]), _as_dict(index, ["w2", "w9"]))


def test_chinese_questions_rank_the_right_entry_first() -> None:
    tok = tokeniser()
    index = BM25Index()
    entries = [e for e in kb_entries() if e.published]
    index.add_many((i, tok.tokenise(e.question)) for i, e in enumerate(entries))
    ids = {e.id: i for i, e in enumerate(entries)}
    assert index.search(tok.tokenise("热水器显示e1了"), 1)[0][0] == ids["jd-wh-e1"]
    assert index.search(tok.tokenise("护臀霜多久涂一次呢？"), 1)[0][0] == ids["my-cream-usage"]
    # A question made of stop words and punctuation matches nothing rather than everything.
    assert index.search(tok.tokenise("你好，在吗？？"), 5) == []
