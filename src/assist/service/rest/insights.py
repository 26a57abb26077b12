"""Insights across conversations: the quality early warning's alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from assist.service.deps import QualityDep
from assist.service.quality import QualityAlert

router = APIRouter(prefix="/v1/insights", tags=["insights"])


class QualityAlertsOut(BaseModel):
    alerts: list[QualityAlert] = Field(description="newest first")


@router.get("/quality-alerts", response_model=QualityAlertsOut)
async def list_quality_alerts(
    quality: QualityDep,
    status: Literal["open", "closed", "all"] = "open",
    sku: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    batch: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QualityAlertsOut:
    """Quality alerts: defects of one SKU, batch and symptom significantly above their baseline
    (one-sided Poisson test; see the README). Open ones by default; ``status=all`` adds the closed."""
    alerts = await quality.alerts(status=None if status == "all" else status, sku=sku, batch=batch, limit=limit)
    return QualityAlertsOut(alerts=alerts)
