"""Intent of one customer turn (DESIGN §2 labels): a linear model over text features plus cues.

Inputs are what the pipeline already has for a turn — the normalised text, its jieba tokens and its
e5 ``query:`` embedding — so classifying costs no extra model call::

    clf = IntentClassifier.load(settings.models_dir / "intent")
    result = clf.predict(prepared.normalised, prepared.tokens, vec)   # IntentResult

Decision = softmax over [char n-grams ⊕ jieba words ⊕ e5] (see ``features.py``), then the
high-precision cue layer (``cues.py``: threats -> complaint, bare greetings -> greeting_thanks, ...)
adjusts the probabilities where it fires. Inference is pure numpy, a few tens of microseconds.

Model files (``<dir>/model.npz`` + ``<dir>/meta.json``) hold only arrays and JSON, so upgrading
scikit-learn can never break loading. ``meta.json`` names the encoder the embeddings must come from;
a pipeline built with another encoder should refuse the model (:meth:`IntentClassifier.check_encoder`).
Train with ``assist train`` (``assist.training.classifiers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assist.errors import ModelError
from assist.types import Intent, IntentResult, ScoredLabel
from assist.understanding.cues import CueSet, apply_intent_cues
from assist.understanding.features import (
    ENCODER_NAME,
    Features,
    FeatureSpace,
    LinearHead,
    SavedClassifier,
    read_model_dir,
)


class IntentClassifier(SavedClassifier):
    """Customer turn -> :class:`IntentResult` (label, confidence, top-3, cues that fired).

    Build with :meth:`load` (or from a freshly trained :class:`FeatureSpace` and :class:`LinearHead`).
    Thread-safe: prediction only reads the weights. Use :meth:`predict_many` when several turns are
    at hand (one matrix product for the embedding part).
    """

    kind = "intent"

    def __init__(
        self,
        space: FeatureSpace,
        head: LinearHead,
        *,
        cues: CueSet | None = None,
        encoder: str = ENCODER_NAME,
        meta: dict[str, Any] | None = None,
    ) -> None:
        unknown = set(head.classes) - {i.value for i in Intent}
        if unknown:
            raise ModelError(f"intent model has labels outside the DESIGN §2 contract: {sorted(unknown)}")
        super().__init__(space, cues=cues, encoder=encoder, meta=meta)
        self.head = head

    # -- persistence ------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, *, cues: CueSet | None = None) -> IntentClassifier:
        """Load from a model directory. ``cues`` defaults to the packaged ``assist/data/cues.yaml``;
        pass a shop's own :class:`CueSet`, or ``CueSet([])`` for the bare statistical model.

        Raises :class:`ModelError` if the files are missing, of another kind or format.
        """
        meta, arrays = read_model_dir(Path(path), cls.kind)
        space = FeatureSpace.from_saved(meta["features"], arrays)
        head = LinearHead(meta["classes"], arrays["W"], arrays["b"], space.n_sparse)
        return cls(space, head, cues=cues if cues is not None else CueSet.load(),
                   encoder=meta.get("encoder", ""), meta=meta)

    def save(self, path: Path, *, extra_meta: dict[str, Any] | None = None) -> None:
        self._save(path, {"classes": self.head.classes}, {"W": self.head.weights, "b": self.head.bias}, extra_meta)

    # -- features -> decision ---------------------------------------------------------------

    def decide(self, text: str, probs: np.ndarray) -> IntentResult:
        """Apply the cues that fire on ``text`` to model ``probs`` and build the result."""
        probs, fired = apply_intent_cues(probs, self.head.classes, self.cues.match(text))
        order = np.argsort(-probs, kind="stable")[:3]
        top = [ScoredLabel(label=self.head.classes[i], score=round(float(probs[i]), 4)) for i in order]
        best = int(order[0])
        return IntentResult(label=Intent(self.head.classes[best]), confidence=round(float(probs[best]), 4),
                            top=top, cues=fired)

    def proba(self, features: Features) -> np.ndarray:
        """Statistical model only (no cues): probabilities in the order of ``classes``."""
        return self.head.proba(features)

    @property
    def classes(self) -> list[str]:
        return self.head.classes

    # -- text -> result ---------------------------------------------------------------------

    def predict(self, text: str, tokens: list[str], embedding: np.ndarray) -> IntentResult:
        """Intent of one normalised turn, given its tokens and e5 embedding."""
        feats = self.space.featurise(text, tokens, embedding)
        return self.decide(text, self.head.proba(feats))

    def predict_many(
        self, texts: Sequence[str], tokens: Sequence[list[str]], embeddings: np.ndarray
    ) -> list[IntentResult]:
        """Batched :meth:`predict`; ``embeddings`` has one row per text."""
        feats = self.space.featurise_many(texts, tokens, embeddings)
        probs = self.head.proba_many(feats)
        return [self.decide(t, p) for t, p in zip(texts, probs, strict=True)]
