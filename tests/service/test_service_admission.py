"""Admission control: the backlog in seconds, live before departed, refusal before anything is stored."""

from __future__ import annotations

import pytest

from assist.errors import ServerBusyError
from assist.service.admission import Admission, Priority
from assist.service.cost import CostModel
from assist.service.metrics import Metrics

# A flat cost model: every turn costs 0.1 s of CPU plus 1 ms per token of encoder time.
FLAT = dict(per_text_s=0.0, per_token_s=1e-3, per_token2_s=0.0, turn_cpu_s=0.1)


def admission(limit_s: float = 1.0, total_limit_s: float = 3.0) -> Admission:
    return Admission(CostModel(**FLAT), limit_s=limit_s, total_limit_s=total_limit_s, metrics=Metrics())


def test_turns_are_admitted_up_to_the_bound_then_refused_with_retry_after() -> None:
    a = admission(limit_s=1.0)
    a.set_live("c1", True)
    tickets = [a.admit("c1", tokens=100) for _ in range(5)]  # 0.2 s each: exactly the bound
    assert a.live_s == pytest.approx(1.0)
    with pytest.raises(ServerBusyError) as busy:
        a.admit("c1", tokens=100)
    assert busy.value.code == "server.busy" and busy.value.retry_after >= 1
    assert a.live_s == pytest.approx(1.0)  # the refused turn holds nothing
    assert a.overloaded()
    assert a.metrics.value("assist_admit_turns_total", outcome="refused") == 1
    assert a.metrics.value("assist_admit_turns_total", outcome="admitted") == 5
    a.release(tickets[0])
    a.admit("c1", tokens=100)  # room again
    assert a.peak_over_s <= 1e-9


def test_an_empty_backlog_admits_any_single_turn() -> None:
    a = admission(limit_s=0.5)
    t = a.admit("c1", tokens=5000)  # 5.1 s: dearer than the bound, but refusing it would be forever
    assert a.backlog_s == pytest.approx(5.1)
    a.release(t)
    assert a.backlog_s == 0 and a.open_tickets == 0


def test_encoder_seconds_leave_when_embedded_the_rest_when_released() -> None:
    a = admission()
    t = a.admit("c1", tokens=300)
    assert a.backlog_s == pytest.approx(0.4)
    a.embedded(t)
    assert a.backlog_s == pytest.approx(0.1)
    a.embedded(t)  # idempotent
    assert a.backlog_s == pytest.approx(0.1)
    a.release(t)
    a.release(t)
    assert a.backlog_s == 0 and a.open_tickets == 0
    agent = a.admit("c1", tokens=None)  # agent turn: CPU only
    assert a.backlog_s == pytest.approx(0.1)
    a.release(agent)


def test_backlog_moves_between_live_and_departed_as_consoles_come_and_go() -> None:
    a = admission(limit_s=1.0, total_limit_s=3.0)
    a.set_live("c1", True)
    t1 = a.admit("c1", tokens=400)
    assert (a.live_s, a.departed_s) == (pytest.approx(0.5), 0)
    assert a.priority(t1) is Priority.live
    a.set_live("c1", False)  # the console left: its acked work is still there, now departed
    assert (a.live_s, a.departed_s) == (0, pytest.approx(0.5))
    assert a.priority(t1) is Priority.departed
    a.set_live("c1", False)  # no change
    assert a.departed_s == pytest.approx(0.5)
    a.set_live("c1", True)
    assert (a.live_s, a.departed_s) == (pytest.approx(0.5), 0)
    a.set_live("c1", False)
    a.release(t1)


def test_departed_backlog_does_not_block_live_turns_until_the_total_bound() -> None:
    a = admission(limit_s=1.0, total_limit_s=3.0)
    departed = a.admit("gone", tokens=2400, force=True)  # 2.5 s whose console has left
    assert a.departed_s == pytest.approx(2.5) and a.live_s == 0
    a.set_live("c1", True)
    live = a.admit("c1", tokens=200)  # 0.3 s: live 0.3 <= 1, total 2.8 <= 3
    with pytest.raises(ServerBusyError):
        a.admit("c1", tokens=200)  # live 0.6 would fit, total 3.1 does not
    a.release(departed)
    more = a.admit("c1", tokens=200)  # the departed work is done: room again
    for t in (live, more):
        a.release(t)


def test_pinned_turns_count_as_live_without_a_console_and_forced_turns_are_never_refused() -> None:
    a = admission(limit_s=0.5)
    rest = a.admit("c9", tokens=300, pinned=True)  # a REST caller is waiting
    assert a.live_s == pytest.approx(0.4) and a.priority(rest) is Priority.live
    with pytest.raises(ServerBusyError):
        a.admit("c9", tokens=300, pinned=True)
    recovered = a.admit("c9", tokens=3000, force=True)
    assert a.backlog_s == pytest.approx(0.4 + 3.1)
    assert a.metrics.value("assist_admit_turns_total", outcome="forced") == 1
    snap = a.snapshot()
    assert snap["overloaded"] is True and snap["limit_s"] == 0.5 and snap["backlog_s"] == pytest.approx(3.5)
    a.release(rest)
    a.release(recovered)
    assert a.metrics.value("assist_admit_backlog_live_seconds") == 0 and a.metrics.value("assist_admit_backlog_departed_seconds") == 0


def test_the_drain_rate_scales_the_bound_to_wall_time() -> None:
    a = admission(limit_s=1.0)
    a.set_live("c1", True)
    t = a.admit("c1", tokens=300)  # 0.4 s of estimated work
    a.sample(now=0.0)
    a.embedded(t)  # 0.3 s of work done in the next second...
    a.sample(now=1.0)
    assert a.rate == pytest.approx(0.3)  # ...so the service gets through 0.3 work-seconds per second
    assert a.live_s == pytest.approx(0.1 / 0.3)  # the rest takes a third of a second, not 0.1
    with pytest.raises(ServerBusyError) as busy:
        a.admit("c1", tokens=300)  # 0.33 + 0.4 / 0.3 > 1 s of wall time
    assert busy.value.retry_after >= 1
    a.release(t)
    a.sample(now=2.0)  # idle windows say nothing about speed
    a.sample(now=3.0)
    assert a.rate == pytest.approx(0.3)
    assert a.snapshot()["drain_rate"] == pytest.approx(0.3)
