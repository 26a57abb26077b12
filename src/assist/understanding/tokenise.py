"""jieba tokenisation with a per-shop user dictionary.

Each ``Tokeniser`` owns its own ``jieba.Tokenizer``, so two shops served by one process
do not share (or pollute) a dictionary. Words from the catalog (product names, model
codes), KB tags and a domain word list are added so that 护臀霜, 红屁屁, 燃气热水器 or X20
stay one token instead of being split by the general dictionary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import jieba

from assist.shop.load import Shop

jieba.setLogLevel(logging.WARNING)

# Tokens that carry no meaning for search or classification.
_DROP = re.compile(r"^[\s\W_]+$", re.UNICODE)
_CODE = re.compile(r"[a-z0-9][a-z0-9+\-.]*[a-z0-9]|[a-z0-9]", re.IGNORECASE)
_SPLIT_NAME = re.compile(r"[\s/()（）【】\[\],，+·]+")


def domain_words(path: Path) -> list[str]:
    """Read a domain word list: one word a line, '#' comments allowed."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            out.append(word)
    return out


def shop_words(shop: Shop) -> list[str]:
    """Words a shop's data contributes to the user dictionary: name parts, categories, tags."""
    words: set[str] = set()
    for item in shop.catalog.values():
        for part in _SPLIT_NAME.split(item.name):
            if 2 <= len(part) <= 12:
                words.add(part)
        words.update(item.tags)
        words.update(p for p in item.category.split("/") if p)
    for entry in shop.kb:
        words.update(t for t in entry.tags if len(t) <= 12)
        words.update(p for p in entry.category.split("/") if p)
    for rel in shop.cross_sell:
        words.update(t for t in rel.triggers if len(t) <= 12)
    return sorted(w for w in words if w.strip())


class Tokeniser:
    """Normalised text -> list of tokens (lower-case, punctuation dropped).

    Build once per shop (loading jieba's dictionary takes ~0.5 s) and reuse; ``tokenise``
    is thread-safe after construction.
    """

    def __init__(self, user_words: Iterable[str] = (), *, _base: Tokeniser | None = None) -> None:
        self._jieba = jieba.Tokenizer()
        # word -> its frequency in the base dictionary (None: not a word there), to undo in derive()
        self._added: dict[str, int | None] = {}
        if _base is None:
            self._jieba.initialize()
        else:
            # A shallow copy of the loaded dictionary (~15 MB, ~10 ms) instead of loading it again
            # (~55 MB, 0.5-15 s): one base dictionary per process, one word list per shop.
            src = _base._jieba
            self._jieba.FREQ = dict(src.FREQ)
            self._jieba.total = src.total
            for word, freq in _base._added.items():
                self._jieba.total -= self._jieba.FREQ.get(word, 0) - (freq or 0)
                self._jieba.FREQ[word] = freq or 0  # 0 = a prefix, not a word: jieba's own marker
            self._jieba.initialized = True
        for word in user_words:
            self.add_word(word)

    def derive(self, user_words: Iterable[str]) -> Tokeniser:
        """A tokeniser with jieba's base dictionary plus ``user_words`` only (not this one's words),
        sharing the already loaded dictionary: one per tenant's shop."""
        return Tokeniser(user_words, _base=self)

    def add_word(self, word: str) -> None:
        word = word.strip().lower()
        if word and " " not in word:
            self._added.setdefault(word, self._jieba.FREQ.get(word) or None)
            # A high frequency makes jieba keep the word whole even against common splits.
            self._jieba.add_word(word, freq=max(self._jieba.suggest_freq(word, False), 2000))

    def tokenise(self, text: str) -> list[str]:
        """Tokens of already-normalised text. Alphanumeric runs (x20, e1, 13l) stay whole."""
        tokens = []
        for tok in self._jieba.lcut(text, HMM=True):
            tok = tok.strip().lower()
            if tok and not _DROP.match(tok):
                tokens.append(tok)
        return tokens

    __call__ = tokenise
