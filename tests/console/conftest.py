"""Fixtures for the console tests: a real assist server on a loopback port and headless Chromium.

A browser needs a real socket, so the app runs under uvicorn in a thread (its own event loop) on
a free port, with the real runtime (models, index) and its own SQLite file. Chromium is Debian's
``/usr/bin/chromium`` driven by Playwright (never a downloaded browser); without it the tests
skip with the reason. Screenshots go to ``var/artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from live_server import Server, runtime, server  # noqa: F401 (fixtures used by the console tests)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class PageLog:
    """What a page did: requests to other origins, script errors, console errors."""

    def __init__(self, page: Any, origin: str) -> None:
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: r.url.startswith((origin, origin.replace("http", "ws", 1), "data:", f"blob:{origin}"))
                or self.foreign.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:  # noqa: F811 (the fixture, not the import)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    p = context.new_page()
    p.set_default_timeout(20_000)
    p.log = PageLog(p, server.url)
    try:
        yield p
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
