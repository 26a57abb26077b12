"""Liveness, readiness and Prometheus metrics. Never behind the API token (probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from assist.errors import NotReadyError
from assist.service.deps import ServicesDep
from assist.service.errors import error_body

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    stage: str


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """200 while the process is alive and serving, whatever start-up is doing."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready,
            responses={503: {"description": "not ready: {code: service.not_ready, message}"}})
async def readyz(services: ServicesDep) -> JSONResponse | dict[str, str]:
    """200 once models, index and database are loaded and pending turns recovered; 503 until then."""
    if not services.ready:
        detail = f"not ready: {services.stage}" + (f" ({services.error})" if services.error else "")
        return JSONResponse(error_body(NotReadyError(detail)), status_code=503)
    return {"status": "ready", "stage": services.stage}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus exposition (OpenMetrics if the scraper's ``Accept`` asks for it): turns, latency, errors,
    connections, batch sizes, suggestions and feedback, quality defects and alerts, webhook deliveries."""
    body, content_type = services.metrics.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
