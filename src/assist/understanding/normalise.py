"""Text normalisation applied to every turn before tokenising, classifying and searching.

What it does, in order:
- NFKC: full-width letters, digits and punctuation to half-width (Ｅ１ -> E1, ！ -> !);
- traditional -> simplified Chinese (OpenCC t2s, ~0.05 ms a turn), so HK/TW customers match the KB;
- lower-case ASCII (X20 and x20 are one model);
- emoji that carry sentiment become bracketed words ([生气]); other emoji and symbols are dropped;
- runs of punctuation collapse to one mark ("？？？" -> "?"), runs of one character to three
  ("啊啊啊啊啊" -> "啊啊啊"), whitespace to one space.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from opencc import OpenCC

# Sentiment-bearing emoji kept as words: the classifiers and cue lists see them as text.
EMOJI_WORDS: dict[str, str] = {
    "😡": "[生气]", "😠": "[生气]", "🤬": "[生气]", "👿": "[生气]", "💢": "[生气]",
    "😭": "[大哭]", "😢": "[哭]", "😿": "[哭]", "😞": "[失望]", "😔": "[失望]", "😒": "[无语]",
    "🙄": "[无语]", "😤": "[生气]", "😰": "[着急]", "😱": "[着急]", "😨": "[着急]", "😟": "[担心]",
    "🥺": "[拜托]", "🙏": "[拜托]", "👍": "[赞]", "👌": "[好的]", "😊": "[微笑]", "🙂": "[微笑]",
    "😀": "[开心]", "😄": "[开心]", "😁": "[开心]", "😃": "[开心]", "🥰": "[喜欢]", "😍": "[喜欢]",
    "❤": "[爱心]", "❤️": "[爱心]", "💕": "[爱心]", "🌹": "[玫瑰]", "😂": "[笑哭]", "🤣": "[笑哭]",
    "😅": "[尴尬]", "👎": "[差]", "🤔": "[疑问]", "😓": "[汗]", "💔": "[心碎]",
}

_PUNCT_RUN = re.compile(r"([!?.,~。，！？、…\-])\1+")
_CHAR_RUN = re.compile(r"(.)\1{3,}")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s() -> OpenCC:
    return OpenCC("t2s")


def _is_symbol(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # So = other symbol (most emoji), Sk/Cs/Co/Cn = modifiers, surrogates, private use, unassigned.
    return cat in {"So", "Sk", "Cs", "Co", "Cn"} or ch in "\ufe0f\u200d"


def _replace_emoji(text: str) -> str:
    out: list[str] = []
    for ch in text:
        word = EMOJI_WORDS.get(ch)
        if word is not None:
            out.append(word)
        elif not _is_symbol(ch):
            out.append(ch)
    return "".join(out)


def normalise(text: str) -> str:
    """Return the canonical form of a chat message (pure, deterministic, idempotent)."""
    s = _replace_emoji(text)
    s = unicodedata.normalize("NFKC", s)
    s = s.replace("…", "...").replace("～", "~")
    if any(ord(c) > 0x2E80 for c in s):
        s = _t2s().convert(s)
    s = s.lower()
    s = _PUNCT_RUN.sub(r"\1", s)
    s = _CHAR_RUN.sub(r"\1\1\1", s)
    return _SPACE.sub(" ", s).strip()
