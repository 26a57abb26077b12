"""HTML pages the service serves, all from files inside installed packages (nothing from a CDN).

- ``/console``: the reference agent console (chat + assist panel), ``/console/panel``: the assist
  panel alone, for an ``<iframe>`` beside a shop's own chat UI. Static files in
  ``src/assist/console/`` (plain JS modules and CSS, no build step); ``/console/assets/*``.
- ``/docs`` (Swagger UI) when ``ASSIST_DOCS=local`` (the default), with the assets the
  ``fastapi-offline`` wheel ships; ``ASSIST_DOCS=off`` turns it off. There is no ``/redoc``: ReDoc's
  standalone bundle fetches its logo from the vendor's CDN.

The pages hold no data: they talk to ``/v1/ws`` and the REST API like any other client, with the
token the user types in (kept in ``sessionStorage``). None of these routes is in the OpenAPI schema.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from assist.settings import Settings

_log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"

# Everything the console loads comes from this origin; the WebSocket too ('self' covers ws: in
# CSP 3). No frame-ancestors: the panel is meant to be framed by a shop's own console.
_CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'")


def _page(name: str) -> FileResponse:
    return FileResponse(CONSOLE_DIR / name, media_type="text/html",
                        headers={"Content-Security-Policy": _CONSOLE_CSP, "Cache-Control": "no-cache"})


def add_console(app: FastAPI) -> None:
    """Mount ``/console``, ``/console/panel`` and their assets."""

    @app.get("/console", include_in_schema=False)
    async def console() -> FileResponse:
        return _page("index.html")

    @app.get("/console/panel", include_in_schema=False)
    async def panel() -> FileResponse:
        return _page("index.html")  # the same page; console.js shows the panel alone

    app.mount("/console/assets", StaticFiles(directory=CONSOLE_DIR / "assets"), name="console-assets")


def add_docs(app: FastAPI, settings: Settings) -> None:
    """``/docs`` from local assets, or nothing (``ASSIST_DOCS=off``, or the wheel is missing)."""
    if settings.docs == "off":
        return
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        _log.warning("ASSIST_DOCS=local but fastapi-offline is not installed: /docs is off")
        return
    app.mount("/docs/assets", StaticFiles(directory=Path(spec.origin).parent / "static"), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon.png")
