"""One real server per robustness module: uvicorn on a loopback port, the real runtime, its own SQLite.

Module-scoped like the console tests' server: the fuzzers write junk (KB entries, customers,
conversations) that must not leak into other tests, and a fresh store per module keeps each
module's findings its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from live_server import Server, runtime, server  # noqa: F401 (fixtures)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:  # noqa: F811 (the fixture, not the import)
    """One keep-alive connection's worth of client: tests check it stays usable after each 4xx."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
