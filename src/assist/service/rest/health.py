"""Liveness, readiness and Prometheus metrics. Never behind the API token (probes and scrapers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from assist.errors import NotReadyError, OverloadedError
from assist.service.deps import ServicesDep
from assist.service.errors import error_body

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str = Field(description="ready · overloaded (still serving: new turns may get server.busy)")
    stage: str
    overloaded: bool = Field(False, description="the live backlog is at its bound, or a turn was just refused")
    backlog_s: float = Field(0.0, description="seconds to drain the admitted, unfinished work")
    live_backlog_s: float = Field(0.0, description="the part of it for live conversations")
    limit_s: float | None = Field(None, description="ASSIST_ADMIT_BACKLOG_S: the live bound")
    drain_rate: float | None = Field(None, description="estimated work seconds completed per second (measured)")


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """200 while the process is alive and serving, whatever start-up is doing."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready,
            responses={503: {"description": "not ready: {code: service.not_ready, message}; or, with "
                                            "ASSIST_READYZ_OVERLOAD_503, {code: service.overloaded, message, details}"}})
async def readyz(services: ServicesDep) -> JSONResponse | dict[str, Any]:
    """200 once models, index and database are loaded and pending turns recovered; 503 until then.

    Under overload it stays 200 with ``overloaded: true`` and the backlog figures: the service
    sheds what it cannot take with ``server.busy``, and a balancer that pulled every busy replica
    would turn overload into an outage. ``ASSIST_READYZ_OVERLOAD_503=true`` answers 503
    ``service.overloaded`` instead, for balancers with replicas to spare.
    """
    if not services.ready:
        detail = f"not ready: {services.stage}" + (f" ({services.error})" if services.error else "")
        return JSONResponse(error_body(NotReadyError(detail)), status_code=503)
    load: dict[str, Any] = services.admission.snapshot() if services.admission is not None else {}
    if load.get("overloaded") and services.settings.readyz_overload_503:
        exc = OverloadedError(f"overloaded: {load['live_backlog_s']} s of live work queued (bound {load['limit_s']} s)",
                              details=load)
        return JSONResponse(error_body(exc), status_code=503)
    return {"status": "overloaded" if load.get("overloaded") else "ready", "stage": services.stage, **load}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus exposition (OpenMetrics if the scraper's ``Accept`` asks for it): turns, latency, errors,
    connections, batch sizes, suggestions and feedback, quality defects and alerts, webhook deliveries."""
    body, content_type = services.metrics.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
