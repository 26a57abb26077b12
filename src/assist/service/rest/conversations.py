"""Conversations over REST: the same turns, feedback and resolve as the WebSocket, plus the transcript.

A turn posted here goes through exactly the WebSocket's path (ordering, idempotency, persistence,
push to every console watching the conversation) and returns the same ``analysis`` frame.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from assist.errors import TextTooLongError
from assist.limits import Id, Note, Seq, Timestamp
from assist.service.deps import ConversationsDep, SettingsDep
from assist.service.frames import AnalysisFrame, ClientText, EventFrame, Outcome, Role, TurnFrame

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


class TurnIn(BaseModel):
    turn_id: Id
    role: Role
    text: ClientText = Field(min_length=1)
    ts: Timestamp | None = None


class FeedbackIn(BaseModel):
    suggestion_id: Id
    outcome: Outcome
    edited_text: Note | None = None


class ResolveIn(BaseModel):
    ts: Timestamp | None = None


class TurnOut(BaseModel):
    turn_id: str
    role: str
    text: str
    ts: datetime
    status: str = Field(description="received (acked, not yet analysed) · processed · failed")
    analysis: dict[str, Any] | None = Field(None, description="the pipeline's Analysis (customer turns)")
    actions: list[dict[str, Any]] = Field(default_factory=list)
    analysis_seq: int | None = None
    error: str | None = None


class FeedbackOut(BaseModel):
    id: int
    suggestion_id: str
    outcome: Outcome
    edited_text: str | None
    ts: datetime


class TranscriptOut(BaseModel):
    conversation_id: str
    customer_id: str | None
    last_seq: int
    created_at: datetime
    updated_at: datetime
    state: dict[str, Any] = Field(description="ConversationState")
    turns: list[TurnOut]
    feedback: list[FeedbackOut]


class FramesOut(BaseModel):
    conversation_id: str
    frames: list[dict[str, Any]] = Field(description="stored server frames with seq > after, in order")


@router.post("/{conversation_id}/turns", response_model=AnalysisFrame,
             responses={200: {"headers": {"Assist-Duplicate": {"description": "true when the turn_id was seen "
                                                                              "before (stored result)"}}},
                        503: {"description": "server.busy: the analysis backlog is full and the turn was not "
                                             "stored; resend it after Retry-After seconds",
                              "headers": {"Retry-After": {"description": "seconds to wait before resending",
                                                          "schema": {"type": "integer"}}}}})
async def post_turn(conversation_id: Id, body: TurnIn, conversations: ConversationsDep, settings: SettingsDep,
                    response: Response) -> dict[str, Any]:
    """Submit one turn; returns its ``analysis`` (same frame the WebSocket pushes).

    A repeated ``turn_id`` returns the stored analysis and is not processed again. The
    conversation is created on first use. Under overload: 503 ``server.busy`` with ``Retry-After``.
    """
    if len(body.text) > settings.max_text_chars:
        raise TextTooLongError(f"turn text has {len(body.text)} characters; the limit is {settings.max_text_chars}")
    result = await conversations.submit_turn(conversation_id, TurnFrame(**body.model_dump()), waiting=True)
    response.headers["Assist-Duplicate"] = "true" if result.duplicate else "false"
    assert result.analysis is not None
    return result.analysis


@router.post("/{conversation_id}/feedback", response_model=EventFrame)
async def post_feedback(conversation_id: Id, body: FeedbackIn, conversations: ConversationsDep) -> dict[str, Any]:
    """Record what the agent did with a suggestion (accepted, dismissed, edited)."""
    return await conversations.feedback(conversation_id, suggestion_id=body.suggestion_id, outcome=body.outcome,
                                        edited_text=body.edited_text)


@router.post("/{conversation_id}/resolve", response_model=EventFrame)
async def post_resolve(conversation_id: Id, conversations: ConversationsDep, body: ResolveIn | None = None
                       ) -> dict[str, Any]:
    """The agent marks the conversation's problem solved; the event may carry a cross-sell."""
    return await conversations.resolve(conversation_id, ts=body.ts if body else None)


@router.get("/{conversation_id}", response_model=TranscriptOut)
async def get_conversation(conversation_id: Id, conversations: ConversationsDep) -> dict[str, Any]:
    """The transcript: every turn with its analysis and actions, the feedback, and the current state."""
    return await conversations.transcript(conversation_id)


@router.get("/{conversation_id}/frames", response_model=FramesOut)
async def get_frames(conversation_id: Id, conversations: ConversationsDep,
                     after: Annotated[Seq, Query(description="last seq the client has")] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """Stored server frames after ``after`` (what a WebSocket ``resume`` replays), for polling clients."""
    frames = await conversations.frame_docs(conversation_id, after, limit=limit)
    return {"conversation_id": conversation_id, "frames": frames}
