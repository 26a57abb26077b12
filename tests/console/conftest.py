"""Fixtures for the console tests: a real assist server on a loopback port and headless Chromium.

A browser needs a real socket, so the app runs under uvicorn in a thread (its own event loop) on
a free port, with the real runtime (models, index) and its own SQLite file. Chromium is Debian's
``/usr/bin/chromium`` driven by Playwright (never a downloaded browser); without it the tests
skip with the reason. Screenshots go to ``var/artifacts/console/`` (git-ignored).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from assist.service.app import create_app
from assist.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "console"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving one app in a background thread; ``url`` is its http base."""

    def __init__(self, settings: Settings, runtime: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"
        app = create_app(settings, runtime=runtime)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="on", ws_max_size=1 << 20))
        self._thread = threading.Thread(target=self._server.run, name="assist-test-server", daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self._thread.is_alive():
                raise RuntimeError("the test server died while starting")
            time.sleep(0.05)
        raise RuntimeError(f"the test server was not ready in 90 s: {httpx.get(f'{self.url}/readyz').text}")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def runtime() -> Any:
    from assist.runtime import load_runtime

    return load_runtime(Settings(env="test"), progress=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("console") / "assist.db"
    with Server(Settings(env="test", database_url=f"sqlite+aiosqlite:///{db}"), runtime) as s:
        yield s


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
def page(browser: Any, server: Server) -> Iterator[Any]:
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
