"""The one path of a customer turn, shared by the service and ``assist replay``: analyse → decide.

Both callers prepare and embed turns their own way (the service through its micro-batcher, the
replay in batches per chunk of conversations); from the embedding on, a turn goes through exactly
this function, so a replayed turn is understood and decided as it would be live::

    result = customer_step(pipeline, engine, state, prepared=p, vec=v, turn_id="t1", text=text, ts=ts, now=now)
    result.analysis        # as the engine read it in context (the dialogue model's intent/sentiment)
    result.step.state, result.step.actions

Pure apart from the models it calls: no I/O, no clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from assist.engine import Engine, StepResult
from assist.state import ConversationState
from assist.types import Analysis
from assist.understanding.pipeline import Pipeline, Prepared


@dataclass(frozen=True)
class CustomerStep:
    analysis: Analysis
    step: StepResult
    policy_ms: float


def context_skus(state: ConversationState) -> list[str]:
    """SKUs that narrow retrieval for the next customer turn: the products already in context."""
    return list(state.products_in_context)


def customer_step(pipeline: Pipeline, engine: Engine, state: ConversationState, *, prepared: Prepared,
                  vec: np.ndarray, retrieval_vec: np.ndarray | None = None, embed_ms: float = 0.0,
                  turn_id: str, text: str, ts: datetime | None, now: datetime) -> CustomerStep:
    """Classify and retrieve a prepared, embedded customer turn, then fold it in and decide."""
    analysis = pipeline.complete(prepared, vec, skus=context_skus(state), retrieval_vec=retrieval_vec,
                                 embed_ms=embed_ms)
    t0 = time.perf_counter()
    step = engine.customer_turn(state, turn_id=turn_id, text=text, ts=ts, analysis=analysis, now=now)
    policy_ms = (time.perf_counter() - t0) * 1e3
    return CustomerStep(step.analysis or analysis, step, policy_ms)


__all__ = ["CustomerStep", "context_skus", "customer_step"]
