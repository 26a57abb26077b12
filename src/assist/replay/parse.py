"""Read logged conversations (DESIGN §3, a contract) and validate every line.

One JSON object per line::

    {"conversation_id": "c1",
     "customer": {"id": "u1", "tier": "vip", "opt_out_marketing": false, "orders": [...]},
     "turns": [{"turn_id": "t1", "role": "customer", "text": "...", "ts": "...",
                "gold": {"intent": "...", "sentiment": "...", "kb_ids": [...],
                         "actions": [...], "cross_sell_ok": false}},
               {"turn_id": "t2", "role": "agent", "text": "...", "gold": {"qa": ["forbidden_promise"]}}]}

``gold`` is optional and partial; the replay scores what it finds. The gold schema is extended
compatibly for agent turns with ``qa``: the list of quality flags a reviewer would raise on that
agent turn (``[]`` = a clean turn, scored for false alarms; absent = not scored).

A malformed line (bad JSON, a field of the wrong type, an unknown label, a duplicate turn id or
conversation id) is reported with its line number and field and skipped; the rest of the file is
replayed. Nothing is dropped silently: every skipped line is in :attr:`ParsedLogs.problems`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from assist import limits
from assist.errors import RecordProblem, ReplayInputError
from assist.limits import SafeStr, Timestamp, loads_json
from assist.state import CustomerProfile
from assist.types import Emotion, Intent, SentimentLabel, Signal

# Gold action types: the next-best actions DESIGN §1 names. ``qa_alert`` is not here on purpose:
# agent-side alerts are scored through ``qa`` on agent turns, not as a customer-turn action.
GOLD_ACTIONS: tuple[str, ...] = (
    "answer", "clarify", "escalate", "quality_report", "recovery", "care", "cross_sell",
)
# Agent-turn quality flags (DESIGN §5): the codes of the policy's qa_alert actions.
QA_FLAGS: tuple[str, ...] = (
    "forbidden_promise", "superlative", "rude", "personal_data", "promise_tracked", "promise_overdue",
    "slow_first_response", "slow_response",
)

# A log line is one whole conversation; anything bigger than this is not a chat log and would only
# make one bad upload hold a lot of memory.
MAX_LINE_CHARS = 2_000_000


class _Strict(BaseModel):
    # Gold labels are what the scores rest on: a typo ("intnet") must be an error, not a silently
    # unscored turn, so unknown keys are refused here.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Open(BaseModel):
    # Real logs carry more than the contract (channel, agent id, CRM fields): kept, not refused.
    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)


class Gold(_Strict):
    """Expected labels of one turn; every field is optional.

    Customer turns: ``intent``, ``sentiment``, ``kb_ids`` (entries that answer the turn; any one
    of them counts), ``actions`` (action types expected among the top actions), ``cross_sell_ok``
    (true: a cross-sell is right now; false: showing one is a policy violation).
    Agent turns: ``qa`` (quality flags a reviewer would raise; ``[]`` = clean).
    """

    intent: Intent | None = None
    sentiment: SentimentLabel | None = None
    emotion: Emotion | None = None
    signals: list[Signal] | None = Field(None, description="turn signals in context (eval/LABELLING.md)")
    kb_ids: list[str] | None = None
    actions: list[str] | None = None
    cross_sell_ok: bool | None = None
    qa: list[str] | None = None

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, v: list[str] | None) -> list[str] | None:
        bad = [a for a in v or () if a not in GOLD_ACTIONS]
        if bad:
            raise ValueError(f"unknown action type(s) {bad}; expected among {list(GOLD_ACTIONS)}")
        return v

    @field_validator("qa")
    @classmethod
    def _known_flags(cls, v: list[str] | None) -> list[str] | None:
        bad = [a for a in v or () if a not in QA_FLAGS]
        if bad:
            raise ValueError(f"unknown qa flag(s) {bad}; expected among {list(QA_FLAGS)}")
        return v

    @property
    def customer_fields(self) -> list[str]:
        return [k for k in ("intent", "sentiment", "emotion", "signals", "kb_ids", "actions", "cross_sell_ok")
                if getattr(self, k) is not None]


class LoggedTurn(_Open):
    turn_id: SafeStr = Field(min_length=1, max_length=limits.ID_MAX)
    role: Literal["customer", "agent"]
    text: SafeStr = Field(min_length=1)
    ts: Timestamp | None = None
    gold: Gold | None = None

    @model_validator(mode="after")
    def _gold_fits_role(self) -> LoggedTurn:
        # A label that cannot be scored on this role is a mistake in the log, not something to ignore.
        if self.gold is None:
            return self
        if self.role == "agent" and self.gold.customer_fields:
            raise ValueError(f"gold {self.gold.customer_fields} apply to customer turns; agent turns take 'qa'")
        if self.role == "customer" and self.gold.qa is not None:
            raise ValueError("gold 'qa' applies to agent turns only")
        return self


class LoggedConversation(_Open):
    conversation_id: SafeStr = Field(min_length=1, max_length=limits.ID_MAX)
    # The logged customer is exactly the profile the engine works with (assist.state), so a status
    # or field the engine cannot read is reported here, with its line, instead of failing mid-replay.
    customer: CustomerProfile | None = None
    turns: list[LoggedTurn] = Field(min_length=1)

    @property
    def customer_turns(self) -> int:
        return sum(1 for t in self.turns if t.role == "customer")


@dataclass(frozen=True)
class ParsedConversation:
    """A valid conversation and the line it came from (to point back at the log in the report)."""

    line: int
    conversation: LoggedConversation


@dataclass
class ParsedLogs:
    """The valid conversations of a log, in file order, and every problem found.

    ``problems`` are skipped lines (each with file, line, field, message); ``warnings`` are
    oddities that do not stop a line from being replayed (e.g. timestamps going backwards).
    """

    source: str
    conversations: list[ParsedConversation] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    warnings: list[RecordProblem] = field(default_factory=list)
    lines: int = 0

    @property
    def skipped_lines(self) -> int:
        return len({p.line for p in self.problems})


def _field_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<record>"


def _lines(source: Path | str | bytes | Iterable[str]) -> Iterator[str | bytes]:
    # Files and uploads are split as bytes and decoded line by line, so one line in a wrong
    # encoding is one reported problem instead of an unreadable file.
    if isinstance(source, Path):
        with source.open("rb") as fh:
            yield from fh
    elif isinstance(source, bytes):
        yield from source.splitlines()
    elif isinstance(source, str):
        yield from source.splitlines()
    else:
        yield from source


def parse_logs(source: Path | str | bytes | Iterable[str], *, name: str | None = None) -> ParsedLogs:
    """Parse and validate a JSONL log of conversations; never raises on bad content.

    Args:
        source: a file path, the whole text (``str`` / UTF-8 ``bytes``, e.g. an upload), or lines.
        name: how the source is named in problems (default: the path, or ``"<upload>"``).

    Returns:
        :class:`ParsedLogs` with the valid conversations in file order and one
        :class:`~assist.errors.RecordProblem` per error (line numbers are 1-based; blank lines
        are skipped silently because they carry nothing).

    Raises:
        OSError only for an unreadable file; use :func:`read_logs` to get it as
        :class:`~assist.errors.ReplayInputError`.
    """
    label = name or (str(source) if isinstance(source, Path) else "<upload>")
    out = ParsedLogs(source=label)
    seen: dict[str, int] = {}
    for lineno, item in enumerate(_lines(source), start=1):
        out.lines = lineno
        if isinstance(item, bytes):
            try:
                raw = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.problems.append(RecordProblem(label, lineno, "<encoding>", f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
        else:
            raw = item
        if lineno == 1:
            # A file saved by a Windows editor starts with a BOM; that is not a parse error.
            raw = raw.removeprefix("\ufeff")
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_CHARS:
            out.problems.append(RecordProblem(label, lineno, "<line>", f"line longer than {MAX_LINE_CHARS} characters"))
            continue
        try:
            obj = loads_json(raw)
        except json.JSONDecodeError as exc:
            out.problems.append(RecordProblem(label, lineno, "<json>", f"{exc.msg} (column {exc.colno})"))
            continue
        except ValueError as exc:  # NaN, Infinity, nesting deeper than the parser goes
            out.problems.append(RecordProblem(label, lineno, "<json>", str(exc)))
            continue
        if not isinstance(obj, dict):
            out.problems.append(RecordProblem(label, lineno, "<record>", "a line must be one JSON object"))
            continue
        try:
            conv = LoggedConversation.model_validate(obj)
        except PydanticValidationError as exc:
            for err in exc.errors():
                out.problems.append(RecordProblem(label, lineno, _field_of(err["loc"]), err["msg"]))
            continue
        dup = _duplicate_turn(conv)
        if dup is not None:
            # The engine treats a repeated turn_id as the same turn (idempotency); in a log it is a mistake.
            out.problems.append(RecordProblem(label, lineno, f"turns.{dup}.turn_id",
                                              f"duplicate turn_id {conv.turns[dup].turn_id!r}"))
            continue
        first = seen.get(conv.conversation_id)
        if first is not None:
            # Merging two lines into one conversation would mix turns; keep the first, refuse the rest.
            out.problems.append(RecordProblem(label, lineno, "conversation_id",
                                              f"duplicate conversation_id {conv.conversation_id!r} (first on line {first})"))
            continue
        seen[conv.conversation_id] = lineno
        out.warnings.extend(_order_warnings(conv, label, lineno))
        out.conversations.append(ParsedConversation(lineno, conv))
    return out


def _duplicate_turn(conv: LoggedConversation) -> int | None:
    seen: set[str] = set()
    for i, t in enumerate(conv.turns):
        if t.turn_id in seen:
            return i
        seen.add(t.turn_id)
    return None


def _order_warnings(conv: LoggedConversation, label: str, lineno: int) -> list[RecordProblem]:
    # Turns are replayed in file order (that is the order the agent saw); a timestamp going
    # backwards usually means a merged or re-sorted export, worth a look but not a reason to skip.
    warnings = []
    last: datetime | None = None
    for i, t in enumerate(conv.turns):
        if t.ts is None:
            continue
        if last is not None:
            try:
                backwards = t.ts < last
            except TypeError:  # naive vs aware timestamps cannot be ordered
                warnings.append(RecordProblem(label, lineno, f"turns.{i}.ts", "mixes timezone-aware and naive timestamps"))
                last = t.ts
                continue
            if backwards:
                warnings.append(RecordProblem(label, lineno, f"turns.{i}.ts", "timestamp earlier than the previous turn's"))
        last = t.ts
    return warnings


def read_logs(path: Path) -> ParsedLogs:
    """:func:`parse_logs` for a file, with an unreadable file turned into ``ReplayInputError``."""
    try:
        return parse_logs(Path(path))
    except FileNotFoundError as exc:
        raise ReplayInputError(f"{path}: file not found") from exc
    except OSError as exc:
        raise ReplayInputError(f"{path}: {exc.strerror or exc}") from exc
