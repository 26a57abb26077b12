"""The service layer: FastAPI app, WebSocket protocol v1, REST API. Build it with :func:`create_app`."""

from __future__ import annotations

from assist.service.app import create_app

__all__ = ["create_app"]
