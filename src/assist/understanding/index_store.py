"""Persist a built :class:`HybridRetriever` to a directory and load it back, refusing stale indexes.

Layout of an index directory::

    manifest.json    what the index was built from (see Manifest) — written last
    state.json       unit bookkeeping (each entry's unit ids and kinds)
    entries.jsonl    the indexed KB entries, one JSON line each (read line by line: no 100 MB parse;
                     a loaded retriever reads its hits' entries from here, see EntryFile)
    bm25.npz/.json   the BM25 term counts and vocabulary
    dense.faiss      the FAISS index; dense.npz/.json: id map, tombstones, parameters

A save goes to a sibling temporary directory that is renamed into place, so a crash never leaves
a half-written index that looks valid, and a replica loading while another process saves sees
either the old or the new index.

Loading checks the manifest against what the caller is about to serve with — encoder name and
dimension, KB content hash (``Shop.content_hash``), format version, and an optional caller
fingerprint (e.g. a hash of the tokeniser's user dictionary) — and raises
:class:`assist.errors.StaleIndexError` naming every difference, so an index built with another
model or an older KB is never served silently. :func:`load_or_build` turns that into a rebuild.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assist.errors import IndexError_, StaleIndexError
from assist.shop.models import KbEntry
from assist.understanding.bm25 import BM25Index
from assist.understanding.dense import DenseIndex, Storage
from assist.understanding.encoder import Encoder
from assist.understanding.normalise import normalise as default_normalise
from assist.understanding.retrieve import EntryFile, FusionParams, HybridRetriever, Tokenise, kb_content_hash

_log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """What a persisted index was built from."""

    format_version: int
    encoder: str
    dim: int
    kb_hash: str
    n_entries: int
    n_units: int
    index_type: str
    created_at: str
    fingerprint: str = ""


def read_manifest(directory: Path) -> Manifest:
    """Read ``<directory>/manifest.json``.

    Raises:
        IndexError_: there is no index there, or the manifest is unreadable.
    """
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise IndexError_(f"no index at {directory} (missing {MANIFEST}); build it with `assist kb build`")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(**raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise IndexError_(f"unreadable index manifest {path}: {exc}") from exc


def check_manifest(
    manifest: Manifest, *, encoder: Encoder, kb_hash: str | None = None, fingerprint: str | None = None
) -> None:
    """Raise :class:`StaleIndexError` listing every way ``manifest`` differs from what is expected."""
    diffs: dict[str, tuple[Any, Any]] = {}
    if manifest.format_version != FORMAT_VERSION:
        diffs["format_version"] = (manifest.format_version, FORMAT_VERSION)
    if manifest.encoder != encoder.name:
        diffs["encoder"] = (manifest.encoder, encoder.name)
    if manifest.dim != encoder.dim:
        diffs["dim"] = (manifest.dim, encoder.dim)
    if kb_hash is not None and manifest.kb_hash != kb_hash:
        diffs["kb_hash"] = (manifest.kb_hash, kb_hash)
    if fingerprint is not None and manifest.fingerprint != fingerprint:
        diffs["fingerprint"] = (manifest.fingerprint, fingerprint)
    if diffs:
        what = "; ".join(f"{k}: index has {a!r}, expected {b!r}" for k, (a, b) in diffs.items())
        raise StaleIndexError(
            f"index is stale ({what}); rebuild it with `assist kb build`",
            details={k: {"index": a, "expected": b} for k, (a, b) in diffs.items()},
        )


def save_index(retriever: HybridRetriever, directory: Path, *, fingerprint: str = "") -> Manifest:
    """Write ``retriever`` to ``directory`` (replacing what is there, atomically); return its manifest.

    Updates to ``retriever`` wait while it is written; searches continue.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        with retriever.frozen():
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                encoder=retriever.encoder.name,
                dim=retriever.encoder.dim,
                kb_hash=retriever.content_hash,
                n_entries=len(retriever),
                n_units=retriever.unit_count,
                index_type=retriever.index_type,
                created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                fingerprint=fingerprint,
            )
            state, lines = retriever.export_state()
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
            with (tmp / "entries.jsonl").open("wb") as fh:
                for line in lines:
                    fh.write(line + b"\n")
            retriever.bm25_index.save(tmp)
            retriever.dense_index.save(tmp)
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), ensure_ascii=False, indent=1), encoding="utf-8")
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_index(
    directory: Path,
    encoder: Encoder,
    tokenise: Tokenise,
    *,
    kb_hash: str | None = None,
    fingerprint: str | None = None,
    normalise: Callable[[str], str] = default_normalise,
    fusion: FusionParams | None = None,
) -> HybridRetriever:
    """Load a retriever saved by :func:`save_index`.

    Args:
        directory: the index directory.
        encoder: the encoder queries will be embedded with (must match the index).
        tokenise / normalise: the pipeline's (used for later upserts and ``search_text``).
        kb_hash: expected ``Shop.content_hash``; None skips the check (e.g. ``assist analyze``
            against an explicitly given index).
        fingerprint: expected caller fingerprint; None skips the check.
        fusion: fusion parameters; default: built-in for the encoder.

    Raises:
        IndexError_: no index there, or its files are missing/corrupt.
        StaleIndexError: the index was built with another encoder, dimension, KB or format.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest(manifest, encoder=encoder, kb_hash=kb_hash, fingerprint=fingerprint)
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        bm25 = BM25Index.load(directory)
        dense = DenseIndex.load(directory)
        source = EntryFile(directory / "entries.jsonl")
        with source.path.open("rb") as fh:
            retriever = HybridRetriever.restore(state, fh, bm25, dense, encoder, tokenise, normalise=normalise,
                                                fusion=fusion, source=source)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # pydantic's ValidationError is a ValueError
        raise IndexError_(f"index at {directory} is damaged ({exc}); rebuild it with `assist kb build`") from exc
    if retriever.content_hash != manifest.kb_hash:
        raise IndexError_(f"index at {directory} does not match its own manifest (KB hash); rebuild it")
    _trim_heap()
    return retriever


def _trim_heap() -> None:
    """Give the heap pages freed while loading back to the OS.

    Loading parses every entry line and reads the arrays through temporary buffers; glibc keeps
    the freed pages, which stayed in RSS (~11 MB at 100k entries). A no-op off glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_or_build(
    directory: Path,
    entries: Iterable[KbEntry],
    encoder: Encoder,
    tokenise: Tokenise,
    *,
    fingerprint: str = "",
    normalise: Callable[[str], str] = default_normalise,
    fusion: FusionParams | None = None,
    hnsw_threshold: int = 10_000,
    dense_storage: Storage = "sq8",
) -> tuple[HybridRetriever, bool]:
    """Load the index in ``directory`` if it matches ``entries`` and ``encoder``, else build and save it.

    Returns ``(retriever, built)``; ``built`` is True when the index was (re)built.
    """
    entries = list(entries)
    kb_hash = kb_content_hash(entries)
    try:
        return load_index(directory, encoder, tokenise, kb_hash=kb_hash, fingerprint=fingerprint,
                          normalise=normalise, fusion=fusion), False
    except IndexError_ as exc:  # StaleIndexError included
        _log.info("building the KB index at %s: %s", directory, exc.message)
    retriever = HybridRetriever(entries, encoder, tokenise, normalise=normalise, fusion=fusion,
                                hnsw_threshold=hnsw_threshold, dense_storage=dense_storage)
    save_index(retriever, directory, fingerprint=fingerprint)
    return retriever, True
