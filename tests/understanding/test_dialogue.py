"""The dialogue model: context from the state, stable hashed features, training and its file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from assist.state import new_state, on_agent_turn
from assist.types import Analysis, Emotion, Intent, IntentResult, Retrieval, SentimentLabel, SentimentResult
from assist.understanding.dialogue import SIGNALS, DialogueModel, Layout, TurnContext, context_of
from assist.understanding.normalise import normalise

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _analysis(text: str, vec: np.ndarray | None = None, intent: Intent = Intent.other) -> Analysis:
    return Analysis(text=text, normalised=normalise(text), tokens=[],
                    intent=IntentResult(label=intent, confidence=0.6),
                    sentiment=SentimentResult(label=SentimentLabel.neutral, score=0.0, emotion=Emotion.none,
                                              intensity=0.0),
                    kb=Retrieval(hits=[], answered=False), embedding=vec)


def test_context_carries_the_previous_agent_turn_and_resets_the_count() -> None:
    s = new_state("c1")
    s = on_agent_turn(s, turn_id="t1", text="亲，麻烦发一下订单号", ts=T0)
    ctx = context_of(s)
    assert ctx.prev_agent == "亲，麻烦发一下订单号"
    assert ctx.turns_since_guidance == 0 and not ctx.problem_open


def test_analysis_embedding_is_never_serialised() -> None:
    a = _analysis("你好", np.ones(384, dtype=np.float32))
    assert "embedding" not in a.model_dump() and "embedding" not in a.model_dump_json()


def test_hashed_features_are_stable_and_separate_the_blocks() -> None:
    lay = Layout()
    a = _analysis("还是不行")
    i1, v1 = lay.sparse(a, TurnContext(prev_agent="重启一下试试"))
    i2, v2 = lay.sparse(a, TurnContext(prev_agent="重启一下试试"))
    assert (i1 == i2).all() and np.allclose(v1, v2)
    turn_only, _ = lay.sparse(a, TurnContext())
    assert turn_only.max() < lay.turn_dim  # the turn's grams live in the first block
    assert (i1 >= lay.turn_dim).any()  # the agent's grams in their own block


def _tiny_model(tmp_path: Path) -> DialogueModel:
    """Train the real heads (assist.training.dialogue.fit) on a small hand-made set."""
    from assist.replay.parse import Gold
    from assist.training.dialogue import Example, FitSettings, featurise, fit

    rng = np.random.default_rng(0)
    failed = ["还是不行", "试了 没用", "重启了也一样", "换了插座还是不亮", "照做了 还是那样", "依旧不出水"]
    solved = ["好了 谢谢", "可以了", "亮了 虚惊一场", "解决了", "行了行了 好使了", "嗯嗯 正常了"]
    ex = []
    for i, t in enumerate(failed * 3 + solved * 3):
        sig = ["guidance_failed"] if t in failed else ["solved"]
        intent = "product_defect" if t in failed else "greeting_thanks"
        vec = rng.normal(size=384).astype(np.float32)
        ex.append(Example(f"w{i % 3}", "demo", f"c{i}", "t2", _analysis(t, vec / np.linalg.norm(vec)),
                          TurnContext(prev_agent="重启一下试试", guidance_given=1, problem_open=True),
                          Gold(signals=sig, intent=intent, sentiment="neutral")))
    lay = Layout()
    model = fit(lay, featurise(lay, ex), ex, FitSettings())
    model.save(tmp_path / "dialogue")
    return DialogueModel.load(tmp_path / "dialogue")


def test_trained_model_round_trips_and_reads_unseen_phrasings(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path)
    ctx = TurnContext(prev_agent="重启一下试试", guidance_given=1, problem_open=True)
    out = model.predict(_analysis("还是不行啊"), ctx, None)
    assert set(out.signals) == set(SIGNALS)
    assert out.signals["guidance_failed"] > out.signals["solved"]
    assert "guidance_failed" in out.fired
    out = model.predict(_analysis("好了好了"), ctx, None)
    assert out.signals["solved"] > out.signals["guidance_failed"]
    assert abs(sum(out.intent.values()) - 1) < 1e-5 and abs(sum(out.sentiment.values()) - 1) < 1e-5
    size = sum(p.stat().st_size for p in (tmp_path / "dialogue").iterdir())
    assert size < 8_000_000


def test_loading_a_model_for_other_labels_is_refused(tmp_path: Path) -> None:
    import json

    from assist.errors import ModelError

    _tiny_model(tmp_path)
    meta = json.loads((tmp_path / "dialogue" / "meta.json").read_text())
    meta["signals"] = meta["signals"][:-1]
    (tmp_path / "dialogue" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError):
        DialogueModel.load(tmp_path / "dialogue")
