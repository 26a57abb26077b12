"""Fixtures for the service tests: one loaded runtime for the whole session, one app per test.

Loading the runtime (encoder, classifiers, KB index) takes seconds, so it is loaded once and
shared; every test gets its own app on its own SQLite file in ``tmp_path``. The runtime's
retriever is live state: tests that edit the KB use ids of their own and retire them again,
and every new app re-syncs the shop's entries onto it (``KbService.sync``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_build import make_settings, serve
from starlette.testclient import TestClient

from assist.settings import Settings


@pytest.fixture(scope="session")
def runtime() -> Any:
    from assist.runtime import load_runtime

    # Default var_dir: the persisted index under var/ is reused across test runs.
    return load_runtime(Settings(env="test"), progress=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "assist.db")


@pytest.fixture
def client(settings: Settings, runtime: Any) -> Iterator[TestClient]:
    with serve(settings, runtime) as c:
        yield c
