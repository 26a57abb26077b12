"""What a replay predicted for each turn, next to its gold: the input of :mod:`assist.replay.metrics`.

Plain frozen dataclasses with no model or engine objects inside, so metrics and reports can be
computed (and tested) from hand-built values, and a result can travel to a worker thread, a
report file or an HTTP response as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from assist.replay.parse import Gold


@dataclass(frozen=True)
class ActionView:
    """One action the engine returned, reduced to what scoring and the report need."""

    type: str
    id: str = ""
    score: float = 0.0
    sku: str | None = None
    kb_id: str | None = None
    code: str | None = None  # qa_alert flag (forbidden_promise, ...) when type is qa_alert
    reason: str = ""


@dataclass(frozen=True)
class TurnResult:
    """One replayed turn: the prediction, its gold (if any) and per-stage timings in ms.

    For customer turns ``intent``/``sentiment``/``kb_ids`` come from the pipeline and ``actions``
    from the engine, in rank order. For agent turns only ``actions`` (the qa alerts) are set.
    ``error`` is set when the pipeline or engine failed on this turn; nothing else is then.
    """

    conversation_id: str
    turn_id: str
    role: str
    text: str
    ts: str | None = None
    gold: Gold | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    sentiment: str | None = None
    sentiment_score: float | None = None
    emotion: str | None = None
    kb_ids: tuple[str, ...] = ()
    kb_answered: bool | None = None
    actions: tuple[ActionView, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def action_types(self) -> list[str]:
        """Types of the customer-facing actions in rank order (qa alerts left out)."""
        return [a.type for a in self.actions if a.type != "qa_alert"]

    @property
    def qa_flags(self) -> list[str]:
        """Distinct qa flags raised on this turn, in the order first raised."""
        return list(dict.fromkeys(a.code for a in self.actions if a.type == "qa_alert" and a.code))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gold"] = None if self.gold is None else self.gold.model_dump(mode="json", exclude_none=True)
        d["kb_ids"] = list(self.kb_ids)
        d["actions"] = [asdict(a) for a in self.actions]
        return d


@dataclass(frozen=True)
class ConversationResult:
    """Every turn of one conversation, in log order; ``error`` when it could not be finished."""

    conversation_id: str
    line: int
    turns: tuple[TurnResult, ...]
    error: str | None = None
