"""The cue layer: which rules fire on what, how they move probabilities, and that they stay precise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assist.errors import DataFileError
from assist.settings import REPO_ROOT
from assist.understanding.cues import CueSet, apply_intent_cues, measure_cues
from assist.understanding.normalise import normalise

TRAIN_DATA = REPO_ROOT / "data" / "train" / "utterances.jsonl"


@pytest.fixture(scope="module")
def cues() -> CueSet:
    return CueSet.load()


def fired(cues: CueSet, text: str) -> set[str]:
    return {h.rule.id for h in cues.match(normalise(text))}


def test_packaged_rules_load_and_have_unique_ids(cues: CueSet) -> None:
    assert len(cues.rules) >= 8
    assert len({r.id for r in cues.rules}) == len(cues.rules)


@pytest.mark.parametrize("text", ["12315投诉你们", "再不处理我就打12315了", "等着被曝光吧", "我已经找了律师", "消协见"])
def test_threats_fire_as_complaint_and_anger(cues: CueSet, text: str) -> None:
    hits = [h for h in cues.match(normalise(text)) if h.rule.id == "threat"]
    assert hits, text
    rule = hits[0].rule
    assert rule.intent is not None and rule.intent.value == "complaint"
    assert rule.emotion is not None and rule.emotion.value == "anger"


@pytest.mark.parametrize(
    "text",
    ["怎么退货", "坏了怎么保修", "退款多久到账", "差评返现吗", "好评返现怎么领", "寄回来了 单号sf1234567890123",
     "收货电话改成13912345678", "滚筒洗衣机有货吗"],
)
def test_neutral_questions_with_negative_words_fire_no_sentiment_cue(cues: CueSet, text: str) -> None:
    hits = cues.match(normalise(text))
    assert not [h for h in hits if h.rule.sentiment is not None], text
    assert not [h for h in hits if h.rule.intent is not None and h.rule.intent.value == "complaint"], text


def test_asking_how_to_complain_is_a_complaint_but_not_angry(cues: CueSet) -> None:
    hits = cues.match(normalise("怎么投诉你们的快递员"))
    assert [h.rule.id for h in hits] == ["complain_word"]
    assert hits[0].rule.sentiment is None


@pytest.mark.parametrize(
    ("text", "rule"),
    [("呵呵，真是好服务", "sarcasm"), ("你们可真行", "sarcasm"), ("什么破玩意 垃圾", "insult"),
     ("急用!今天能发吗", "urgency"), ("本来挺期待的 算了吧", "letdown"), ("谢谢解决了", "thanks"),
     ("好的谢谢亲", "thanks_only"), ("在吗", "greeting_confirm"), ("能开专票吗", "invoice_word")],
)
def test_rule_fires(cues: CueSet, text: str, rule: str) -> None:
    assert rule in fired(cues, text)


def test_resigned_thanks_is_not_read_as_positive(cues: CueSet) -> None:
    assert "thanks" not in fired(cues, "行吧 谢谢")
    assert "thanks" not in fired(cues, "物流好慢啊 等的花儿都谢了")


def test_hits_report_the_matched_text(cues: CueSet) -> None:
    assert "threat:12315" in [str(h) for h in cues.match("12315投诉你们")]


def test_intent_cue_overrides_and_keeps_a_distribution(cues: CueSet) -> None:
    classes = ["logistics", "complaint", "other"]
    probs = np.array([0.9, 0.05, 0.05])
    out, names = apply_intent_cues(probs, classes, cues.match("再不到我就打12315"))
    assert classes[int(np.argmax(out))] == "complaint"
    assert out.sum() == pytest.approx(1.0)
    assert names and names[0].startswith("threat:")
    # no hit: unchanged
    same, none = apply_intent_cues(probs, classes, cues.match("快递到哪了"))
    assert np.allclose(same, probs) and none == []


def test_bad_rule_file_names_the_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cues.yaml"
    path.write_text("rules:\n  - id: ok\n    match: [a]\n  - id: bad\n    match: [b]\n    intent: nonsense\n",
                    encoding="utf-8")
    with pytest.raises(DataFileError) as e:
        CueSet.load(path)
    assert e.value.problems[0].line == 2 and e.value.problems[0].field == "intent"


def test_a_shop_can_bring_its_own_rules(tmp_path: Path) -> None:
    path = tmp_path / "cues.yaml"
    path.write_text("rules:\n  - id: brand_threat\n    match: [找记者]\n    intent: complaint\n    intent_weight: 0.7\n",
                    encoding="utf-8")
    cs = CueSet.load(path)
    assert [str(h) for h in cs.match("我要找记者")] == ["brand_threat:找记者"]


@pytest.mark.skipif(not TRAIN_DATA.exists(), reason="training data not present (data/train/utterances.jsonl)")
def test_every_rule_is_high_precision_on_the_labelled_data(cues: CueSet) -> None:
    rows = []
    for line in TRAIN_DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.append({**r, "text": normalise(r["text"])})
    stats = measure_cues(cues, rows)
    for rule_id, s in stats.items():
        if s["fires"] < 5:  # too few to estimate; reviewed by hand
            continue
        for claim in ("intent_precision", "sentiment_precision", "emotion_precision"):
            if s[claim] is not None:
                assert s[claim] >= 0.9, (rule_id, claim, s["misses"])
