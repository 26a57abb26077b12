"""The pages the service serves (assist.service.pages): the console and /docs, from package files only."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

from starlette.testclient import TestClient

from assist.service.app import create_app
from assist.service.pages import CONSOLE_DIR
from assist.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_pages_and_assets_are_served_from_the_package() -> None:
    client = TestClient(create_app(Settings(env="test")))  # no lifespan: pages need no model
    for path in ("/console", "/console/panel"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for ref in (*_refs(r.text, 'src="'), *_refs(r.text, 'href="')):
            assert ref.startswith(("/", "data:")), f"{path} loads {ref} from elsewhere"
    assert client.get("/console/assets/console.js").headers["content-type"].startswith(
        ("text/javascript", "application/javascript"))
    assert client.get("/console/assets/nope.js").status_code == 404


def _refs(html: str, attr: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split(attr)[1:]]


def test_package_data_ships_every_console_file() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["assist"]
    package = CONSOLE_DIR.parent
    for f in CONSOLE_DIR.rglob("*"):
        if f.is_file():
            rel = f.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} would be missing from a wheel"


def test_docs_are_local_or_off() -> None:
    on = TestClient(create_app(Settings(env="test")))
    page = on.get("/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert on.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert on.get("/redoc").status_code == 404
    off = TestClient(create_app(Settings(env="test", docs="off")))
    assert off.get("/docs").status_code == 404
    assert json.loads(off.get("/openapi.json").text)["info"]["title"] == "assist"
