"""A real assist server on a loopback port: uvicorn in a background thread (its own event loop).

Used where a test needs a real socket: the console's browser tests, and the robustness tests
(schemathesis over HTTP, the WebSocket fuzz, TCP backpressure). A conftest imports the fixtures
``runtime`` (one loaded runtime per session) and ``server`` (one server per test module, on its
own SQLite file) from here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from assist.service.app import create_app
from assist.settings import Settings


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
    db = tmp_path_factory.mktemp("live") / "assist.db"
    with Server(Settings(env="test", database_url=f"sqlite+aiosqlite:///{db}"), runtime) as s:
        yield s
