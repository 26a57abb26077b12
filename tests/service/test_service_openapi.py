"""Contract: the committed openapi.yaml is exactly what the app serves (DESIGN §4)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from assist.service.app import create_app
from assist.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_matches_the_app() -> None:
    app = create_app(Settings(env="test", api_token=""))
    # Without the lifespan: serving the schema needs no model.
    served = TestClient(app).get("/openapi.json").json()
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    assert json.loads(json.dumps(committed)) == served, (
        "openapi.yaml differs from the app's schema: run `python scripts/export_openapi.py` and commit it"
    )


def test_documents_every_route_and_the_frames() -> None:
    schema = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    paths = schema["paths"]
    for path in ("/v1/conversations/{conversation_id}/turns", "/v1/conversations/{conversation_id}/feedback",
                 "/v1/conversations/{conversation_id}/resolve", "/v1/conversations/{conversation_id}",
                 "/v1/analyze", "/v1/kb/entries", "/v1/kb/entries/{entry_id}", "/v1/kb/entries/{entry_id}/history",
                 "/v1/kb/search", "/v1/kb/reindex", "/v1/customers/{customer_id}", "/v1/orders/events",
                 "/healthz", "/readyz", "/metrics"):
        assert path in paths, path
    components = schema["components"]["schemas"]
    for name in ("ClientFrame", "ServerFrame", "HelloFrame", "TurnFrame", "AnalysisFrame", "ErrorFrame"):
        assert name in components, name
