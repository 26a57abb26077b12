"""Sentiment and emotion of one customer turn (DESIGN §2): label, score, emotion, intensity, cues.

Same inputs and feature space as :mod:`assist.understanding.intent` (normalised text, jieba tokens,
e5 ``query:`` embedding), two linear heads over them:

- ``polarity``: negative / neutral / positive;
- ``emotion``: the six consistent (label, emotion) pairs — negative/anger, negative/anxiety,
  negative/disappointment, neutral/none, positive/satisfaction, positive/none.

Decoding keeps the outputs consistent by construction: the label is the argmax of the polarity
distribution (polarity head, optionally averaged with the emotion head's marginals, ``polarity_mix``
in the model metadata, chosen by cross-validation), and the emotion is the most probable emotion
*within* that label, so neutral always comes with ``none``, positive with satisfaction/none and
negative with anger/anxiety/disappointment. Cues (threats, insults, sarcasm, urgency, thanks; see
``cues.py``) move either distribution where they fire.

- ``score`` = P(positive) − P(negative), in −1..1;
- ``intensity`` (0..1) is a heuristic, not a trained output — the data has no intensity labels:
  |score| for a non-neutral turn, raised to the floor of any cue that fired (a threat is intense
  however polite its wording), and 0 for neutral.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assist.errors import ModelError
from assist.types import Emotion, SentimentLabel, SentimentResult
from assist.understanding.cues import CueSet, apply_label_cue, sentiment_hits
from assist.understanding.features import (
    ENCODER_NAME,
    Features,
    FeatureSpace,
    LinearHead,
    SavedClassifier,
    read_model_dir,
)

POLARITY_CLASSES = [SentimentLabel.negative.value, SentimentLabel.neutral.value, SentimentLabel.positive.value]

# The (label, emotion) pairs the contract allows; the emotion head predicts one of these.
EMOTIONS_OF: dict[str, tuple[str, ...]] = {
    "negative": ("anger", "anxiety", "disappointment"),
    "neutral": ("none",),
    "positive": ("satisfaction", "none"),
}
JOINT_CLASSES = [f"{label}/{emo}" for label, emos in EMOTIONS_OF.items() for emo in emos]


# Column j of _TO_LABEL adds joint class j into its label: joint probabilities @ _TO_LABEL = label marginals.
_TO_LABEL = np.array([[1.0 if c.split("/")[0] == lab else 0.0 for lab in POLARITY_CLASSES] for c in JOINT_CLASSES])


def polarity_marginals(joint: np.ndarray) -> np.ndarray:
    """P(negative), P(neutral), P(positive) implied by emotion-head probabilities (one row or many)."""
    return np.asarray(joint) @ _TO_LABEL


def joint_label(sentiment: str, emotion: str) -> str:
    """The emotion-head class of a labelled row; inconsistent pairs raise ValueError."""
    if emotion not in EMOTIONS_OF.get(sentiment, ()):
        raise ValueError(f"emotion {emotion!r} is not allowed with sentiment {sentiment!r}")
    return f"{sentiment}/{emotion}"


class SentimentClassifier(SavedClassifier):
    """Customer turn -> :class:`SentimentResult`.

    Build with :meth:`load`; thread-safe after that. ``predict_many`` batches the embedding part.
    """

    kind = "sentiment"

    def __init__(
        self,
        space: FeatureSpace,
        polarity: LinearHead,
        emotion: LinearHead,
        *,
        polarity_mix: float = 0.0,
        cues: CueSet | None = None,
        encoder: str = ENCODER_NAME,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if polarity.classes != POLARITY_CLASSES or emotion.classes != JOINT_CLASSES:
            raise ModelError(
                f"sentiment model classes {polarity.classes} / {emotion.classes} do not match "
                f"{POLARITY_CLASSES} / {JOINT_CLASSES}; retrain with `assist train`"
            )
        super().__init__(space, cues=cues, encoder=encoder, meta=meta)
        self.polarity = polarity
        self.emotion = emotion
        self.polarity_mix = polarity_mix

    # -- persistence ------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, *, cues: CueSet | None = None) -> SentimentClassifier:
        """Load from a model directory; ``cues`` as in ``IntentClassifier.load``.

        Raises :class:`ModelError` if the files are missing, of another kind or format.
        """
        meta, arrays = read_model_dir(Path(path), cls.kind)
        space = FeatureSpace.from_saved(meta["features"], arrays)
        pol = LinearHead(meta["polarity_classes"], arrays["W_polarity"], arrays["b_polarity"], space.n_sparse)
        emo = LinearHead(meta["emotion_classes"], arrays["W_emotion"], arrays["b_emotion"], space.n_sparse)
        return cls(space, pol, emo, polarity_mix=float(meta.get("polarity_mix", 0.0)),
                   cues=cues if cues is not None else CueSet.load(), encoder=meta.get("encoder", ""), meta=meta)

    def save(self, path: Path, *, extra_meta: dict[str, Any] | None = None) -> None:
        self._save(
            path,
            {"polarity_classes": self.polarity.classes, "emotion_classes": self.emotion.classes,
             "polarity_mix": self.polarity_mix},
            {"W_polarity": self.polarity.weights, "b_polarity": self.polarity.bias,
             "W_emotion": self.emotion.weights, "b_emotion": self.emotion.bias},
            extra_meta,
        )

    # -- features -> decision ---------------------------------------------------------------

    def label_proba(self, pol: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """Polarity distribution from the two heads (statistical model only, no cues)."""
        return (1.0 - self.polarity_mix) * pol + self.polarity_mix * polarity_marginals(joint)

    def decide(self, text: str, pol: np.ndarray, joint: np.ndarray) -> SentimentResult:
        """Combine head outputs ``pol`` (3) and ``joint`` (6) with the cues firing on ``text``."""
        p = self.label_proba(pol, joint)
        hits = sentiment_hits(self.cues.match(text))
        cue_emotion: list[tuple[str, float]] = []
        floor = 0.0
        for h in hits:
            r = h.rule
            if r.sentiment is not None:
                p = apply_label_cue(p, POLARITY_CLASSES, r.sentiment.value, r.sentiment_weight)
            if r.emotion is not None:
                cue_emotion.append((r.emotion.value, r.sentiment_weight))
            if r.intensity is not None:
                floor = max(floor, r.intensity)
        label = POLARITY_CLASSES[int(np.argmax(p))]

        # emotion: most probable emotion allowed with the label, after the cues that name one
        emos = EMOTIONS_OF[label]
        cond = np.array([joint[JOINT_CLASSES.index(f"{label}/{e}")] for e in emos], dtype=np.float64)
        cond = cond / cond.sum() if cond.sum() > 0 else np.full(len(emos), 1.0 / len(emos))
        for emo, w in cue_emotion:
            cond = apply_label_cue(cond, emos, emo, w)
        emotion = emos[int(np.argmax(cond))]

        score = float(np.clip(p[2] - p[0], -1.0, 1.0))
        intensity = 0.0 if label == "neutral" else float(np.clip(max(abs(score), floor), 0.0, 1.0))
        fired = [str(h) for h in hits[::-1]]
        return SentimentResult(label=SentimentLabel(label), score=round(score, 4), emotion=Emotion(emotion),
                               intensity=round(intensity, 4), cues=fired)

    # -- text -> result ---------------------------------------------------------------------

    def heads(self, features: Features) -> tuple[np.ndarray, np.ndarray]:
        """Raw head outputs (polarity 3, joint emotion 6) for one turn's features."""
        return self.polarity.proba(features), self.emotion.proba(features)

    def predict(self, text: str, tokens: list[str], embedding: np.ndarray) -> SentimentResult:
        """Sentiment of one normalised turn, given its tokens and e5 embedding."""
        feats = self.space.featurise(text, tokens, embedding)
        pol, joint = self.heads(feats)
        return self.decide(text, pol, joint)

    def predict_many(
        self, texts: Sequence[str], tokens: Sequence[list[str]], embeddings: np.ndarray
    ) -> list[SentimentResult]:
        """Batched :meth:`predict`; ``embeddings`` has one row per text."""
        feats = self.space.featurise_many(texts, tokens, embeddings)
        pols = self.polarity.proba_many(feats)
        joints = self.emotion.proba_many(feats)
        return [self.decide(t, a, b) for t, a, b in zip(texts, pols, joints, strict=True)]
