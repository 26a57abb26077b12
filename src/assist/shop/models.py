"""Record types of a shop directory (DESIGN §3, a contract)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assist import limits
from assist.limits import SafeStr
from assist.types import Intent

# Each similar phrasing is embedded while the KB write lock is held: their number and length
# bound how long one edit can hold it (assist.limits).
Similar = Annotated[SafeStr, Field(max_length=limits.KB_SIMILAR_MAX)]
Tag = Annotated[SafeStr, Field(max_length=limits.LABEL_MAX)]
KbId = Annotated[str, Field(min_length=1, max_length=limits.ID_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


class KbStatus(StrEnum):
    draft = "draft"
    published = "published"
    retired = "retired"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class KbContent(BaseModel):
    """What an editor writes of a KB entry: the one definition of its fields and their limits,
    shared by the shop file record and the REST bodies (so the limits show in the OpenAPI schema)."""

    question: SafeStr = Field(min_length=1, max_length=limits.KB_QUESTION_MAX)
    similar: list[Similar] = Field(default_factory=list, max_length=limits.KB_SIMILAR_ITEMS)
    answer: SafeStr = Field(min_length=1, max_length=limits.KB_ANSWER_MAX)
    category: SafeStr = Field("", max_length=limits.KB_CATEGORY_MAX)
    skus: list[Tag] = Field(default_factory=list, max_length=limits.KB_TAG_ITEMS)
    tags: list[Tag] = Field(default_factory=list, max_length=limits.KB_TAG_ITEMS)
    intent: Intent | None = None
    status: KbStatus = KbStatus.published

    @field_validator("similar", "skus", "tags")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        cleaned = [s.strip() for s in v]
        if any(not s for s in cleaned):
            raise ValueError("must not contain empty strings")
        return cleaned


class KbEntry(_Record, KbContent):
    id: KbId
    version: int = Field(1, ge=1)
    updated_at: datetime | None = None

    @property
    def published(self) -> bool:
        return self.status is KbStatus.published


class CatalogItem(_Record):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = ""
    price: float = Field(ge=0, allow_inf_nan=False)
    tags: list[str] = Field(default_factory=list)
    stock: int = Field(0, ge=0)
    consumable: bool = False


class CrossSellRelation(_Record):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, description="a SKU or 'category:<path>'")
    to: str = Field(min_length=1, description="SKU")
    reason: str = Field(min_length=1)
    script: str = Field(min_length=1)
    triggers: list[str] = Field(default_factory=list)
    weight: float = Field(1.0, ge=0, le=10)

    @property
    def from_category(self) -> str | None:
        return self.from_.removeprefix("category:") if self.from_.startswith("category:") else None

    def applies_to(self, sku: str, category: str) -> bool:
        """True when this relation starts from ``sku`` or from a category containing it."""
        cat = self.from_category
        if cat is None:
            return self.from_ == sku
        return category == cat or category.startswith(cat + "/")
