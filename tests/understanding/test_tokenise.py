from __future__ import annotations

from pathlib import Path

import pytest

from assist.settings import PACKAGE_DATA
from assist.shop import load_shop
from assist.understanding.normalise import normalise
from assist.understanding.tokenise import Tokeniser, domain_words, shop_words

KB_DATA = Path(__file__).resolve().parents[2] / "kb_data"


@pytest.fixture(scope="module")
def tokeniser() -> Tokeniser:
    words = domain_words(PACKAGE_DATA / "domain_words.txt") + shop_words(load_shop(KB_DATA))
    return Tokeniser(words)


def test_domain_words_stay_whole(tokeniser: Tokeniser) -> None:
    toks = tokeniser.tokenise(normalise("宝宝红屁屁了，护臀霜怎么用？"))
    assert "红屁屁" in toks and "护臀霜" in toks


def test_codes_stay_whole_and_punctuation_is_dropped(tokeniser: Tokeniser) -> None:
    toks = tokeniser.tokenise(normalise("热水器显示Ｅ１！！怎么办？"))
    assert "e1" in toks
    assert all(t.strip("!?,. ") for t in toks)


def test_tokenisers_do_not_share_dictionaries() -> None:
    a = Tokeniser(["超能吸水层"])
    b = Tokeniser()
    assert "超能吸水层" in a.tokenise("这个超能吸水层好用吗")
    assert "超能吸水层" not in b.tokenise("这个超能吸水层好用吗")


def test_derived_tokeniser_has_the_base_dictionary_and_only_its_own_words() -> None:
    base = Tokeniser(["超能吸水层"])
    plain = Tokeniser()
    derived = base.derive(["猫咪饮水机"])  # another tenant's shop words
    text = "这个超能吸水层和猫咪饮水机好用吗"
    assert "猫咪饮水机" in derived.tokenise(text) and "猫咪饮水机" not in base.tokenise(text)
    assert "超能吸水层" not in derived.tokenise(text)  # the base's shop words stay with the base
    sample = "宝宝屁股红红的用什么好，热水器显示E1怎么办"
    assert derived.tokenise(sample) == plain.tokenise(sample)
