"""Replay logged conversations through the real pipeline and engine, in memory.

Each conversation starts from a fresh state (``Engine.new_conversation``) with its logged customer
profile and is stepped turn by turn, in log order, through the same units the live service
uses: :class:`~assist.understanding.pipeline.Pipeline` for customer turns and
:class:`~assist.engine.Engine` for the policy and the agent-turn checks. State lives only in this
process, one per conversation, so a replay never writes into live conversations and turns of
two conversations never mix.

The one expensive step, embedding, depends only on the text, so it is done ahead of the
sequential part for a chunk of conversations at a time, in batches (and each distinct text once);
everything that depends on the conversation state (classification context, retrieval filtered by
products in context, the policy) then runs turn by turn. The embed time a turn reports is its
share of its batch, i.e. offline throughput, not the latency of a live turn.

Time: a turn is replayed "at" its logged ``ts``; a turn without one at the previous turn's time,
and a conversation without any at the replay's start time (``now``). Rules with time thresholds
(unshipped for > 24 h, slow first response) therefore judge the logged moment, not today.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assist.errors import RecordProblem
from assist.replay.parse import LoggedConversation, LoggedTurn, ParsedConversation, ParsedLogs
from assist.replay.results import ActionView, ConversationResult, TurnResult
from assist.state import ConversationState
from assist.turn import customer_step

if TYPE_CHECKING:
    from assist.engine import Engine
    from assist.shop import Shop
    from assist.understanding.pipeline import Pipeline, Prepared

_log = logging.getLogger(__name__)

# Texts per embedding call: big enough to keep the encoder's threads busy, small enough that the
# vectors of one chunk stay a few MB.
DEFAULT_BATCH = 64
# Conversations whose customer turns are embedded together before being stepped through.
DEFAULT_CHUNK = 32


@dataclass(frozen=True)
class Progress:
    """Where a running replay is; passed to the progress callback after each conversation."""

    done: int
    total: int
    turns_done: int
    turns_total: int
    conversation_id: str
    failed: int


ProgressFn = Callable[[Progress], None]
# (conversation_id, turn_id) -> (prepared turn, classifier vector, retrieval vector or None, embed ms)
_Embedded = dict[tuple[str, str], tuple["Prepared", np.ndarray, np.ndarray | None, float]]


def engine_for_shop(shop: Shop, rules_dir: Path, dialogue: Any = None, actions: Any = None) -> Engine:
    """The policy engine for ``shop``, built as the service builds it: the defaults in ``rules_dir``
    (``Settings.rules_dir``) with the shop's own ``policy.yaml`` merged over them."""
    from assist.engine import Engine

    return Engine.from_shop(shop, rules_dir, dialogue, actions)


def _view(action: Any) -> ActionView:
    details = getattr(action, "details", None) or {}
    return ActionView(type=str(action.type), id=str(getattr(action, "id", "")), score=float(getattr(action, "score", 0.0)),
                      sku=getattr(action, "sku", None), kb_id=getattr(action, "kb_id", None),
                      code=details.get("code"), reason=str(getattr(action, "reason", "")))


class Replayer:
    """Replay conversations through one pipeline and engine.

    Args:
        pipeline: the understanding pipeline of the shop (``assist.runtime``); only ``prepare``,
            ``embed`` and ``complete`` are used.
        engine: the policy engine of the same shop (see :func:`engine_for_shop`).
        batch_size: texts per embedding call.
        chunk: conversations embedded together before they are stepped through.

    Use :meth:`run`; it is synchronous and CPU-bound, so a service calls it in a worker thread.
    """

    def __init__(self, pipeline: Pipeline, engine: Engine, *, batch_size: int = DEFAULT_BATCH,
                 chunk: int = DEFAULT_CHUNK) -> None:
        if batch_size < 1 or chunk < 1:
            raise ValueError("batch_size and chunk must be >= 1")
        self.pipeline = pipeline
        self.engine = engine
        self.batch_size = batch_size
        self.chunk = chunk

    # -------------------------------------------------------------- batched, state-free part

    def _embed_chunk(self, convs: Sequence[LoggedConversation]) -> _Embedded:
        """Prepare and embed every customer turn of ``convs``; key: (conversation_id, turn_id)."""
        prepared: dict[tuple[str, str], Prepared] = {}
        for c in convs:
            for t in c.turns:
                if t.role == "customer":
                    prepared[(c.conversation_id, t.turn_id)] = self.pipeline.prepare(t.text)
        # Chat repeats itself ("好的", "在吗"): embed each distinct normalised text once.
        texts = list(dict.fromkeys(p.normalised for p in prepared.values()))
        vec_of: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = {}
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i:i + self.batch_size]
            t0 = time.perf_counter()
            vecs, rvecs = self.pipeline.embed(batch)
            share = (time.perf_counter() - t0) * 1e3 / len(batch)
            for j, text in enumerate(batch):
                vec_of[text] = (vecs[j], None if rvecs is None else rvecs[j], share)
        return {k: (p, *vec_of[p.normalised]) for k, p in prepared.items()}

    # -------------------------------------------------------------- sequential, stateful part

    def _customer_turn(self, state: ConversationState, conv: LoggedConversation, turn: LoggedTurn, now: datetime,
                       emb: tuple[Prepared, np.ndarray, np.ndarray | None, float]) -> tuple[ConversationState, TurnResult]:
        prepared, vec, rvec, embed_ms = emb
        t0 = time.perf_counter()
        r = customer_step(self.pipeline, self.engine, state, prepared=prepared, vec=vec, retrieval_vec=rvec,
                          embed_ms=embed_ms, turn_id=turn.turn_id, text=turn.text, ts=now, now=now)
        t2 = time.perf_counter()
        analysis, step = r.analysis, r.step
        timings = dict(analysis.timings_ms)
        timings["policy"] = round(r.policy_ms, 3)
        # total = the turn's own work: prepare (normalise+tokenise), its embed share, classify+retrieve, policy.
        timings["total"] = round(prepared.timings_ms.get("normalise", 0.0) + prepared.timings_ms.get("tokenise", 0.0)
                                 + embed_ms + (t2 - t0) * 1e3, 3)
        return step.state, TurnResult(
            conversation_id=conv.conversation_id, turn_id=turn.turn_id, role="customer", text=turn.text,
            ts=turn.ts.isoformat() if turn.ts else None, gold=turn.gold,
            intent=str(analysis.intent.label), intent_confidence=round(analysis.intent.confidence, 4),
            sentiment=str(analysis.sentiment.label), sentiment_score=round(analysis.sentiment.score, 4),
            emotion=str(analysis.sentiment.emotion),
            kb_ids=tuple(h.kb_id for h in analysis.kb.hits), kb_answered=analysis.kb.answered,
            actions=tuple(_view(a) for a in step.actions), timings_ms=timings,
        )

    def _agent_turn(self, state: ConversationState, conv: LoggedConversation, turn: LoggedTurn,
                    now: datetime) -> tuple[ConversationState, TurnResult]:
        t0 = time.perf_counter()
        step = self.engine.agent_turn(state, turn_id=turn.turn_id, text=turn.text, ts=now, now=now)
        ms = round((time.perf_counter() - t0) * 1e3, 3)
        return step.state, TurnResult(
            conversation_id=conv.conversation_id, turn_id=turn.turn_id, role="agent", text=turn.text,
            ts=turn.ts.isoformat() if turn.ts else None, gold=turn.gold,
            # No "total": latency.total is the customer-turn path (pipeline + policy); the agent-side
            # check is reported as its own stage so it does not pull the turn percentiles down.
            actions=tuple(_view(a) for a in step.actions), timings_ms={"qa": ms},
        )

    def replay_conversation(self, parsed: ParsedConversation, now: datetime,
                            embedded: _Embedded | None = None) -> ConversationResult:
        """Step one conversation through the engine from a fresh state; never raises.

        ``embedded`` holds its turns' vectors when they were computed in a batch (else they are
        computed here). A failure on a turn is recorded on that turn and ends the conversation (its
        state after a failed step is unknown, so later turns would be scored on a guess).
        """
        conv = parsed.conversation
        if embedded is None:
            try:
                embedded = self._embed_chunk([conv])
            except Exception as exc:  # an unembeddable text fails its conversation, not the replay
                _log.exception("embedding failed for %s (log line %d)", conv.conversation_id, parsed.line)
                return ConversationResult(conv.conversation_id, parsed.line, (), error=f"{type(exc).__name__}: {exc}")
        state = self.engine.new_conversation(conv.conversation_id, conv.customer)
        clock = next((t.ts for t in conv.turns if t.ts is not None), now)
        out: list[TurnResult] = []
        for turn in conv.turns:
            clock = turn.ts or clock
            try:
                if turn.role == "customer":
                    state, result = self._customer_turn(state, conv, turn, clock,
                                                        embedded[(conv.conversation_id, turn.turn_id)])
                else:
                    state, result = self._agent_turn(state, conv, turn, clock)
            except Exception as exc:  # one bad conversation must not end the whole replay
                _log.exception("replay failed on %s/%s (log line %d)", conv.conversation_id, turn.turn_id, parsed.line)
                msg = f"{type(exc).__name__}: {exc}"
                out.append(TurnResult(conversation_id=conv.conversation_id, turn_id=turn.turn_id, role=turn.role,
                                      text=turn.text, ts=turn.ts.isoformat() if turn.ts else None, gold=turn.gold,
                                      error=msg))
                return ConversationResult(conv.conversation_id, parsed.line, tuple(out), error=msg)
            out.append(result)
        return ConversationResult(conv.conversation_id, parsed.line, tuple(out))

    def run(self, conversations: Sequence[ParsedConversation], *, progress: ProgressFn | None = None,
            now: datetime | None = None) -> list[ConversationResult]:
        """Replay every conversation, in order; returns one result per conversation.

        ``progress`` is called after each conversation (from this thread). ``now`` is the time of
        conversations that log no timestamps (default: the replay's start).
        """
        start = now or datetime.now(UTC)
        results: list[ConversationResult] = []
        turns_total = sum(len(p.conversation.turns) for p in conversations)
        turns_done = failed = 0
        for i in range(0, len(conversations), self.chunk):
            chunk = conversations[i:i + self.chunk]
            try:
                embedded = self._embed_chunk([p.conversation for p in chunk])
            except Exception:
                # A bad text in a batch (or an encoder hiccup) is retried one conversation at a time
                # inside replay_conversation, where a failure stays with its conversation.
                _log.exception("batched embedding failed; falling back to one conversation at a time")
                embedded = None
            for p in chunk:
                res = self.replay_conversation(p, start, embedded)
                results.append(res)
                turns_done += len(p.conversation.turns)
                failed += res.error is not None
                if progress is not None:
                    progress(Progress(len(results), len(conversations), turns_done, turns_total,
                                      p.conversation.conversation_id, failed))
        return results


def shop_info(shop: Shop) -> dict[str, Any]:
    """What a report records about the shop it was replayed against."""
    return {
        "dir": str(shop.root) if shop.root else None, "kb_entries": len(shop.kb),
        "published_kb_entries": len(shop.published_kb), "catalog_items": len(shop.catalog),
        "cross_sell_relations": len(shop.cross_sell), "content_hash": shop.content_hash,
    }


def gold_warnings(parsed: ParsedLogs, shop: Shop) -> list[RecordProblem]:
    """Gold KB ids that are not published entries of ``shop``: usually logs labelled against
    another KB (or a retired entry), which would silently cap KB recall."""
    published = {e.id for e in shop.published_kb}
    out = []
    for p in parsed.conversations:
        for i, t in enumerate(p.conversation.turns):
            for kb_id in (t.gold.kb_ids or []) if t.gold else []:
                if kb_id not in published:
                    out.append(RecordProblem(parsed.source, p.line, f"turns.{i}.gold.kb_ids",
                                             f"{kb_id!r} is not a published KB entry of this shop"))
    return out


def evaluate(parsed: ParsedLogs, *, pipeline: Pipeline, engine: Engine, shop: Shop,
             progress: ProgressFn | None = None, batch_size: int = DEFAULT_BATCH,
             input_sha256: str | None = None, config: dict[str, Any] | None = None,
             ) -> tuple[dict[str, Any], list[ConversationResult]]:
    """Replay ``parsed`` and build its report: the one entry point the CLI and the REST route share,
    so both give the same metrics for the same logs and shop.

    Returns ``(report, results)``; see :func:`assist.replay.report.build_report` for the report.
    """
    from assist.replay.report import build_report

    parsed.warnings.extend(gold_warnings(parsed, shop))
    t0 = time.perf_counter()
    results = Replayer(pipeline, engine, batch_size=batch_size).run(parsed.conversations, progress=progress)
    elapsed = time.perf_counter() - t0
    encoder = getattr(getattr(pipeline, "embedder", None), "name", None)
    cfg = {"batch_size": batch_size, "encoder": encoder, "elapsed_s": round(elapsed, 3), **(config or {})}
    report = build_report(results, parsed, shop=shop_info(shop), config=cfg, input_sha256=input_sha256)
    return report, results
