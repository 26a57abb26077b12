"""WebSocket protocol v1 (DESIGN §4, a contract): every frame a client or the server may send.

Every frame is a JSON object with ``"type"`` and ``"v": 1``.

Client -> server::

    hello   {conversation_id, token?, customer?, create?}   open (or create) a conversation
    turn    {turn_id, role: customer|agent, text, ts?}       one chat message
    feedback{suggestion_id, outcome: accepted|dismissed|edited, edited_text?}
    resolve {}                                               the agent marks the problem solved
    resume  {last_seq}                                       replay every stored frame after last_seq
    draft   {text, draft_id?}                                QA check of the agent's unsent text
    ping    {nonce?}

Server -> client::

    ack      {ref: hello|turn|feedback|resolve, turn_id?, suggestion_id?, duplicate, last_seq?}
    analysis {turn_id, role, intent, sentiment, kb, actions, state, timings_ms}
    event    {event, data, actions, state?}    CRM hooks (order.shipped, profile.updated ...),
                                               feedback and resolve outcomes
    error    {code, message, ref?, turn_id?, retry_after?}   retry_after: server.busy only
    qa       {draft_id?, flags: [{code, reason, hint, spans}]}   the answer to a draft
    pong     {nonce?, server_time}

``seq``: frames that belong to the conversation's history (``ack`` of a turn/feedback/resolve,
``analysis``, ``event``) carry the conversation's next sequence number and are stored, so
``resume(last_seq)`` replays them after a reconnect or a restart. Frames that only answer this
connection (``pong``, ``error``, ``qa``, the ``ack`` of ``hello``, the ``ack`` of a repeated
``turn_id``) have ``seq: null`` and are never replayed. A ``draft`` is checked and forgotten: it
is not a turn, changes no state and is not stored; only the ``turn`` the agent finally sends is.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from assist import limits
from assist.errors import (
    TOO_LONG_TYPES,
    BadFrameError,
    FieldTooLongError,
    FrameTooLargeError,
    TextTooLongError,
    UnknownFrameError,
)
from assist.limits import Id, Note, SafeStr, Seq, Timestamp, loads_json
from assist.policy.actions import Action
from assist.state import ConversationState, CustomerProfile
from assist.types import IntentResult, Outcome, Retrieval, Role, SentimentResult

PROTOCOL_VERSION = 1

# What a client's text may be: a turn's and a draft's are bounded by ASSIST_MAX_TEXT_CHARS (checked
# after parsing, so the error says turn.text_too_long); the schema shows the highest it can be.
ClientText = Annotated[SafeStr, Field(json_schema_extra={"maxLength": limits.TURN_TEXT_MAX})]
# Echoed back as they came: bounded, so an echo cannot be made big.
Echo = Annotated[str, Field(max_length=limits.NONCE_MAX)] | Annotated[int, Field(ge=-limits.SEQ_MAX,
                                                                                 le=limits.SEQ_MAX)]


class SessionPhase(StrEnum):
    """Where a WebSocket session is: only ``hello`` and ``ping`` are allowed before ``open``."""

    awaiting_hello = "awaiting_hello"
    open = "open"
    closed = "closed"


# --- client frames ---------------------------------------------------------------------------


class _ClientFrame(BaseModel):
    # Unknown fields are ignored so a newer console can talk to an older server within v1.
    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1


class _ConversationFrame(_ClientFrame):
    conversation_id: Id | None = Field(None, description="if given, must be the hello's conversation "
                                       "(error ws.conversation_mismatch otherwise)")


class HelloFrame(_ClientFrame):
    type: Literal["hello"] = "hello"
    conversation_id: Id
    token: limits.text(limits.TOKEN_MAX) | None = Field(
        None, description="API key (`assist keys create`) or ASSIST_API_TOKEN, when not sent in the "
                          "handshake's Authorization header")
    customer: CustomerProfile | None = Field(None, description="profile to attach (upserted into the store)")
    create: bool = Field(True, description="create the conversation if unknown; false: error conversation.not_found")


class TurnFrame(_ConversationFrame):
    type: Literal["turn"] = "turn"
    turn_id: Id
    role: Role
    text: ClientText = Field(min_length=1)
    ts: Timestamp | None = None


class FeedbackFrame(_ConversationFrame):
    type: Literal["feedback"] = "feedback"
    suggestion_id: Id
    outcome: Outcome
    edited_text: Note | None = None


class ResolveFrame(_ConversationFrame):
    type: Literal["resolve"] = "resolve"
    ts: Timestamp | None = None


class ResumeFrame(_ConversationFrame):
    type: Literal["resume"] = "resume"
    last_seq: Seq = Field(description="the last seq the client has; every stored frame after it is replayed")


class DraftFrame(_ConversationFrame):
    """What the agent is typing, before it is sent: answered with a ``qa`` frame, never stored."""

    type: Literal["draft"] = "draft"
    text: ClientText = Field(description="the whole unsent text (empty: nothing to check)")
    draft_id: Echo | None = Field(None, description="echoed in the qa frame, so a console can drop stale answers")


class PingFrame(_ClientFrame):
    type: Literal["ping"] = "ping"
    nonce: Echo | None = None


ClientFrame = Annotated[
    HelloFrame | TurnFrame | FeedbackFrame | ResolveFrame | ResumeFrame | DraftFrame | PingFrame,
    Field(discriminator="type"),
]
_CLIENT_TYPES = {"hello", "turn", "feedback", "resolve", "resume", "draft", "ping"}
_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientFrame)


def _echoable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limits.ID_MAX and limits.is_unicode(value)


def _short(value: object) -> str:
    # repr escapes surrogates and control characters; the cut keeps an error frame small.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_client_frame(raw: str | bytes, *, max_text_chars: int,
                       max_frame_bytes: int = limits.WS_FRAME_MAX_BYTES) -> ClientFrame:
    """Parse and validate one client frame.

    Raises (each carries ``details={"ref": <frame type or None>, "turn_id": ...}`` so the
    error frame can say which request it answers):
        FrameTooLargeError: the frame is bigger than ``max_frame_bytes``.
        BadFrameError: not JSON (NaN and Infinity included), nested too deeply, not an object,
            missing/invalid fields, unsupported ``v``.
        UnknownFrameError: a ``type`` this protocol version does not have.
        TextTooLongError: a turn's or a draft's text is longer than ``max_text_chars``.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_frame_bytes:
        raise FrameTooLargeError(f"frame has {size} bytes; the limit is {max_frame_bytes}", details={"ref": None})
    try:
        obj = loads_json(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadFrameError(f"frame is not valid JSON: {exc}", details={"ref": None}) from None
    if not isinstance(obj, dict):
        raise BadFrameError("frame must be a JSON object", details={"ref": None})
    ftype = obj.get("type")
    # The error frame echoes type and turn_id: only values that are safe to send back as they are.
    turn_id = obj.get("turn_id")
    ref = {"ref": ftype if _echoable(ftype) else None,
           "turn_id": turn_id if _echoable(turn_id) else None}
    if not isinstance(ftype, str):
        raise BadFrameError("frame has no string 'type'", details=ref)
    if ftype not in _CLIENT_TYPES:
        raise UnknownFrameError(f"unknown frame type {_short(ftype)}; expected one of {sorted(_CLIENT_TYPES)}",
                                details=ref)
    if obj.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise BadFrameError(f"unsupported protocol version {_short(obj.get('v'))}; this server speaks v1",
                            details=ref)
    try:
        frame = _client_adapter.validate_python(obj)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"][1:]) or "<frame>"  # [0] is the union tag
        cls = FieldTooLongError if err["type"] in TOO_LONG_TYPES else BadFrameError
        raise cls(f"{ftype}: {loc}: {err['msg']}", details=ref) from None
    if isinstance(frame, TurnFrame | DraftFrame) and len(frame.text) > max_text_chars:
        raise TextTooLongError(f"{frame.type} text has {len(frame.text)} characters; the limit is {max_text_chars}",
                               details=ref)
    return frame  # type: ignore[no-any-return]


# --- server frames ---------------------------------------------------------------------------


class _ServerFrame(BaseModel):
    v: Literal[1] = 1
    seq: int | None = Field(None, description="per-conversation sequence number; null for frames never replayed")
    conversation_id: str | None = None


class AckFrame(_ServerFrame):
    type: Literal["ack"] = "ack"
    ref: Literal["hello", "turn", "feedback", "resolve"]
    turn_id: str | None = None
    suggestion_id: str | None = None
    duplicate: bool = Field(False, description="turn_id seen before: the stored result follows, nothing reprocessed")
    last_seq: int | None = Field(None, description="on hello: the latest stored seq of the conversation")


class AnalysisFrame(_ServerFrame):
    """What assist says about one turn: understanding (customer turns), ranked actions, new state."""

    type: Literal["analysis"] = "analysis"
    turn_id: str
    role: Role
    ts: datetime | None = None
    intent: IntentResult | None = Field(None, description="customer turns only")
    sentiment: SentimentResult | None = Field(None, description="customer turns only")
    kb: Retrieval | None = Field(None, description="customer turns only")
    skus_mentioned: list[str] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list, description="ranked; qa_alert actions for agent turns")
    state: ConversationState
    timings_ms: dict[str, float] = Field(default_factory=dict)


class EventFrame(_ServerFrame):
    type: Literal["event"] = "event"
    event: str = Field(description="order.<type>, profile.updated, suggestion.feedback, conversation.resolved")
    data: dict[str, Any] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    state: ConversationState | None = None


class ErrorFrame(_ServerFrame):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = Field(None, description="type of the client frame this answers")
    turn_id: str | None = None
    retry_after: int | None = Field(None, description="server.busy: seconds to wait before resending the turn "
                                                      "(it was not stored)")


class QaSpan(BaseModel):
    start: int = Field(description="character (code point) offset into the draft's text")
    end: int
    text: str = Field(description="the matched text; personal data is masked")


class QaFlag(BaseModel):
    """One problem in a draft: the same check, reason and hint as the ``qa_alert`` of a sent agent turn."""

    code: str = Field(description="forbidden_promise · superlative · rude · personal_data · promise_tracked")
    reason: str
    hint: str = Field(description="what to write instead (the qa_alert's script)")
    spans: list[QaSpan] = Field(default_factory=list)


class QaFrame(_ServerFrame):
    """The QA check of a ``draft``, most serious flag first. Answers one connection; never stored."""

    type: Literal["qa"] = "qa"
    draft_id: str | int | None = None
    flags: list[QaFlag] = Field(default_factory=list)


class PongFrame(_ServerFrame):
    type: Literal["pong"] = "pong"
    nonce: str | int | None = None
    server_time: datetime


ServerFrame = Annotated[
    AckFrame | AnalysisFrame | EventFrame | ErrorFrame | QaFrame | PongFrame, Field(discriminator="type")
]
server_frame_adapter: TypeAdapter[Any] = TypeAdapter(ServerFrame)


def dump_frame(frame: _ServerFrame) -> str:
    """Serialise a server frame to the JSON text sent on the wire (UTF-8, no ASCII escaping)."""
    return frame.model_dump_json()
