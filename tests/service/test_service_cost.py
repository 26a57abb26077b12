"""The cost model that prices turns for admission control: the curve, and its online corrections."""

from __future__ import annotations

import pytest

from assist.service.cost import CostModel


def test_encoder_cost_grows_faster_than_length() -> None:
    cost = CostModel()
    short, medium, long = cost.encoder_s(10), cost.encoder_s(100), cost.encoder_s(500)
    assert 0 < short < medium < long
    # a long text costs more than its length's share of short texts would (attention is quadratic)
    assert long / medium > 5.0
    assert cost.turn_s(None) == pytest.approx(cost.turn_cpu_s)  # an agent turn is not embedded
    assert cost.turn_s(10) == pytest.approx(cost.turn_cpu_s + short)


def test_tokens_come_from_the_encoder_when_it_can_count() -> None:
    assert CostModel(lambda text: 7).tokens("whatever") == 7
    assert CostModel().tokens("在吗") == 4  # two characters + two specials without a tokenizer


def test_observed_batches_rescale_the_curve() -> None:
    cost = CostModel()
    before = cost.encoder_s(20)
    for _ in range(200):  # this machine is three times slower than the prior
        cost.observe_batch([20, 20], 3 * 2 * before)
    assert cost.scale == pytest.approx(3.0, rel=0.02)
    assert cost.encoder_s(20) == pytest.approx(3 * before, rel=0.02)
    assert cost.batches_observed == 200


def test_one_outlier_batch_moves_the_scale_only_a_little_and_within_bounds() -> None:
    cost = CostModel()
    cost.observe_batch([10], 1e6)  # the process was frozen for days
    assert 1.0 < cost.scale < 2.0
    for _ in range(1000):
        cost.observe_batch([10], 1e6)
    assert cost.scale <= 20.0
    cost.observe_batch([], 1.0)  # nothing predicted: ignored
    cost.observe_batch([10], -1.0)
    assert cost.scale <= 20.0


def test_measured_cpu_per_turn_replaces_the_prior() -> None:
    cost = CostModel(turn_cpu_s=0.012)
    for _ in range(50):
        cost.observe_turn_cpu(0.030)
    assert cost.turn_cpu_s == pytest.approx(0.030, rel=0.01)
    cost.observe_turn_cpu(-1.0)  # a clock glitch is ignored
    assert cost.turn_cpu_s == pytest.approx(0.030, rel=0.01)
