"""Shared fixtures of the replay tests: real runtimes (pipeline + engine) on the demo and unseen shops.

Loading a runtime embeds the shop's KB and loads the classifiers, so each is built once per session
and shared; the pure tests (parse, metrics, report, compare, floors) do not use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from replay_build import REPO, UNSEEN_SHOP, Loaded

from assist.settings import Settings


def _models_missing(settings: Settings) -> str | None:
    for name in ("intent", "sentiment"):
        if not (settings.models_dir / name).exists():
            return f"trained {name} model missing in {settings.models_dir} (run `assist train`)"
    return None


def _load(shop_dir: Path) -> Loaded:
    from assist.replay.run import engine_for_shop
    from assist.runtime import load_runtime

    # No var_dir here: Settings reads ASSIST_VAR_DIR, which tests/conftest.py points at one
    # directory per session, so the demo index is built once and shared with the other packages.
    settings = Settings(env="test", shop_dir=shop_dir)
    reason = _models_missing(settings)
    if reason:
        pytest.skip(reason)
    runtime = load_runtime(settings, progress=False)
    return Loaded(settings, runtime, engine_for_shop(runtime.shop, settings.rules_dir, runtime.dialogue,
                                                     runtime.actions))


@pytest.fixture(scope="session")
def demo() -> Loaded:
    return _load(REPO / "kb_data")


@pytest.fixture(scope="session")
def unseen() -> Loaded:
    return _load(UNSEEN_SHOP)


@pytest.fixture
def reuse_runtime(monkeypatch: pytest.MonkeyPatch, demo: Loaded, unseen: Loaded) -> Iterator[None]:
    """Make ``assist replay`` reuse the session runtimes instead of loading models again (speed only:
    it is the same ``load_runtime`` result for the same shop)."""
    import assist.runtime

    by_shop = {Path(demo.settings.shop_dir).resolve(): demo.runtime,
               Path(unseen.settings.shop_dir).resolve(): unseen.runtime}

    def fake_load(settings: Settings, *, progress: bool = False, shop: Any = None) -> Any:
        return by_shop[Path(settings.shop_dir).resolve()]

    monkeypatch.setattr(assist.runtime, "load_runtime", fake_load)
    yield
