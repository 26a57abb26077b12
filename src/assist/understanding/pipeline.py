"""One customer turn through the understanding stages: normalise, tokenise, embed, classify, retrieve.

The pipeline is split at the embedding so a service can batch the expensive step across
concurrent conversations::

    prepared = pipeline.prepare(text)            # normalise + tokenise, ~0.1 ms
    vec = encoder.encode_queries([prepared.normalised])[0]   # or a micro-batcher
    analysis = pipeline.complete(prepared, vec, skus=...)    # classify + retrieve, ~1-2 ms

``analyse`` does all three for one text; ``analyse_many`` batches the embedding.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assist.shop.models import CatalogItem
from assist.types import Analysis
from assist.understanding.encoder import Encoder
from assist.understanding.intent import IntentClassifier
from assist.understanding.normalise import normalise
from assist.understanding.retrieve import HybridRetriever
from assist.understanding.sentiment import SentimentClassifier
from assist.understanding.tokenise import Tokeniser

_CODE = re.compile(r"[a-z]*\d+[a-z0-9\-]*|[a-z]+-[a-z0-9\-]+", re.IGNORECASE)


@dataclass(frozen=True)
class Prepared:
    text: str
    normalised: str
    tokens: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


def sku_aliases(catalog: dict[str, CatalogItem]) -> dict[str, set[str]]:
    """Map distinctive strings that name a product (SKU id, model codes like x20 / jsq30-16l) to SKUs.

    A code that appears in several items' names (e.g. "m码") is ambiguous and dropped.
    """
    alias: dict[str, set[str]] = {}
    for item in catalog.values():
        alias.setdefault(item.sku.lower(), set()).add(item.sku)
        for code in _CODE.findall(item.name.lower()):
            if len(code) >= 3 and any(c.isalpha() for c in code) and any(c.isdigit() for c in code):
                alias.setdefault(code, set()).add(item.sku)
    return {k: v for k, v in alias.items() if len(v) <= 3}


class Pipeline:
    """Understanding pipeline for one shop. Build with ``assist.runtime.build_pipeline``.

    Heavy parts are passed in (STYLE: stages receive their models); nothing here does I/O.
    ``embedder`` embeds the text the classifiers see; ``retriever`` embeds with its own
    encoder when that is a different model (a sentence-transformers override).
    """

    def __init__(
        self,
        *,
        tokeniser: Tokeniser,
        embedder: Encoder,
        retriever: HybridRetriever,
        intent: IntentClassifier,
        sentiment: SentimentClassifier,
        catalog: dict[str, CatalogItem],
        top_k: int = 5,
    ) -> None:
        self.tokeniser = tokeniser
        self.embedder = embedder
        self.retriever = retriever
        self.intent = intent
        self.sentiment = sentiment
        self.catalog = catalog
        self.top_k = top_k
        self._aliases = sku_aliases(catalog)

    @property
    def shares_encoder(self) -> bool:
        return self.retriever.encoder is self.embedder or self.retriever.encoder.name == self.embedder.name

    def prepare(self, text: str) -> Prepared:
        t0 = time.perf_counter()
        norm = normalise(text)
        t1 = time.perf_counter()
        tokens = self.tokeniser.tokenise(norm)
        t2 = time.perf_counter()
        return Prepared(text, norm, tokens, {"normalise": (t1 - t0) * 1e3, "tokenise": (t2 - t1) * 1e3})

    def mentioned_skus(self, prepared: Prepared) -> list[str]:
        found: list[str] = []
        for code in {prepared.normalised, *prepared.tokens}:
            for sku in sorted(self._aliases.get(code, ())):
                if sku not in found:
                    found.append(sku)
        for code in _CODE.findall(prepared.normalised):
            for sku in sorted(self._aliases.get(code, ())):
                if sku not in found:
                    found.append(sku)
        return found

    def complete(
        self,
        prepared: Prepared,
        vec: np.ndarray,
        *,
        skus: Sequence[str] = (),
        category: str | None = None,
        retrieval_vec: np.ndarray | None = None,
        embed_ms: float = 0.0,
    ) -> Analysis:
        """Classify and retrieve for a prepared turn whose embedding is ``vec``.

        ``retrieval_vec`` is needed only when the retriever uses another encoder than the classifiers.
        """
        timings = dict(prepared.timings_ms)
        timings["embed"] = embed_ms
        t0 = time.perf_counter()
        intent = self.intent.predict(prepared.normalised, prepared.tokens, vec)
        t1 = time.perf_counter()
        sentiment = self.sentiment.predict(prepared.normalised, prepared.tokens, vec)
        t2 = time.perf_counter()
        mentioned = self.mentioned_skus(prepared)
        context = list(dict.fromkeys([*mentioned, *skus]))
        qvec = vec if retrieval_vec is None else retrieval_vec
        kb = self.retriever.search(prepared.normalised, prepared.tokens, qvec, k=self.top_k,
                                   category=category, skus=context or None)
        t3 = time.perf_counter()
        timings.update({"intent": (t1 - t0) * 1e3, "sentiment": (t2 - t1) * 1e3, "retrieve": (t3 - t2) * 1e3})
        return Analysis(
            text=prepared.text, normalised=prepared.normalised, tokens=prepared.tokens, intent=intent,
            sentiment=sentiment, kb=kb, skus_mentioned=mentioned,
            timings_ms={k: round(v, 3) for k, v in timings.items()}, embedding=vec,
        )

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings for the classifiers and, if the retriever's encoder differs, for retrieval."""
        vecs = self.embedder.encode_queries(texts)
        if self.shares_encoder:
            return vecs, None
        return vecs, self.retriever.encoder.encode_queries(texts)

    def analyse(self, text: str, *, skus: Sequence[str] = (), category: str | None = None) -> Analysis:
        return self.analyse_many([text], skus=skus, category=category)[0]

    def analyse_many(
        self, texts: list[str], *, skus: Sequence[str] = (), category: str | None = None
    ) -> list[Analysis]:
        prepared = [self.prepare(t) for t in texts]
        t0 = time.perf_counter()
        vecs, rvecs = self.embed([p.normalised for p in prepared])
        embed_ms = (time.perf_counter() - t0) * 1e3 / max(len(texts), 1)
        return [
            self.complete(p, vecs[i], skus=skus, category=category,
                          retrieval_vec=None if rvecs is None else rvecs[i], embed_ms=embed_ms)
            for i, p in enumerate(prepared)
        ]
