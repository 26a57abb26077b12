"""Stateless analysis: one text through the understanding pipeline, nothing stored."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from assist import limits
from assist.errors import TextTooLongError
from assist.limits import Label
from assist.service.deps import ConversationsDep, SettingsDep
from assist.service.frames import ClientText
from assist.types import Analysis

router = APIRouter(prefix="/v1", tags=["analyze"])


class AnalyzeIn(BaseModel):
    text: ClientText = Field(min_length=1)
    skus: list[Label] = Field(default_factory=list, max_length=limits.SKUS_MAX,
                              description="products in context (a retrieval boost)")
    category: limits.text(limits.KB_CATEGORY_MAX) | None = Field(
        None, description="restrict KB hits to a category path prefix")


@router.post("/analyze", response_model=Analysis)
async def analyze(body: AnalyzeIn, conversations: ConversationsDep, settings: SettingsDep) -> Analysis:
    """Intent, sentiment and KB hits (the caller's tenant's KB) for one text, without a conversation."""
    limit = settings.max_text_chars
    if len(body.text) > limit:
        raise TextTooLongError(f"text has {len(body.text)} characters; the limit is {limit}")
    return await conversations.analyse_text(body.text, skus=body.skus, category=body.category)
