"""Record types of a shop directory (DESIGN §3, a contract)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assist.types import Intent


class KbStatus(StrEnum):
    draft = "draft"
    published = "published"
    retired = "retired"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class KbEntry(_Record):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    question: str = Field(min_length=1, max_length=500)
    similar: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=1, max_length=5000)
    category: str = ""
    skus: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    intent: Intent | None = None
    version: int = Field(1, ge=1)
    status: KbStatus = KbStatus.published
    updated_at: datetime | None = None

    @field_validator("similar", "skus", "tags")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        cleaned = [s.strip() for s in v]
        if any(not s for s in cleaned):
            raise ValueError("must not contain empty strings")
        return cleaned

    @property
    def published(self) -> bool:
        return self.status is KbStatus.published


class CatalogItem(_Record):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    category: str = ""
    price: float = Field(ge=0)
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
