"""The decisions on writers never used for tuning meet eval/dialogue_floors.yaml.

The whole system as shipped (pipeline, dialogue model, learned action judgment, policy) replays the
`writers_out` group of the protocol (assist.replay.protocol: conversations by the report writers of
data/dialogues/split.yaml on the tuning shops) and is held to floors that sit a little below what
was measured. Slow: ~1,000 customer turns over five shops (each shop's KB is embedded once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from assist.policy.learned import load_action_model
from assist.replay.protocol import run_protocol
from assist.settings import Settings
from assist.understanding.dialogue import load_dialogue_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FLOORS = REPO / "eval" / "dialogue_floors.yaml"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_untuned_writers_meet_the_floors() -> None:
    settings = Settings(env="test")
    model = load_dialogue_model(settings.models_dir / "dialogue")
    if model is None:
        pytest.skip("no dialogue model in models/dialogue (run `assist train`)")
    actions = load_action_model(settings.models_dir / "dialogue" / "actions.json")
    floors = yaml.safe_load(FLOORS.read_text(encoding="utf-8"))
    group = floors["group"]
    report = run_protocol(settings, model, actions, groups=(group,))
    got = _flat(report["groups"][group])
    problems = [f"{k} = {got.get(k)} < {v}" for k, v in floors.get("min", {}).items()
                if got.get(k) is None or got[k] < v]
    problems += [f"{k} = {got.get(k)} > {v}" for k, v in floors.get("max", {}).items()
                 if got.get(k) is None or got[k] > v]
    assert not problems, "\n".join(problems)
