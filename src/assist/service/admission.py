"""Admission control: the analysis backlog is bounded by the seconds of work it holds.

Every turn is costed before it is acknowledged (:class:`~assist.service.cost.CostModel`: its
encoder seconds plus the per-turn CPU) and admitted against two bounds:

- ``limit_s`` on the work of **live** conversations (a console is subscribed, or a REST caller
  is waiting for the answer). Live work is served first, so this bounds how long an admitted
  turn waits: about ``limit_s`` plus its own cost.
- ``total_limit_s`` on all work, including the backlog of conversations whose console has gone.
  That work is still done (it is acknowledged), but after live work; the bound keeps it from
  growing while live traffic keeps the encoder busy.

Beyond either bound the turn is refused with :class:`~assist.errors.ServerBusyError` and a
``retry_after``, *before* anything is stored, so nothing acknowledged is ever dropped. An empty
backlog admits any single turn, however dear: refusing it would only make the client retry it
forever. Turns recovered at start-up are admitted unconditionally (``force``): they were acked.

A turn's encoder part leaves the backlog when its embedding is computed, the rest when the turn
is processed (or fails).

The bounds are in seconds of *wall time to drain*: the estimated work divided by the **drain
rate**, the estimated work the service actually completes per second while it has a backlog
(measured every second by :func:`sample_costs`). The cost model prices the encoder and the CPU of
a turn, but not what it does not see (the event loop parsing and refusing frames under overload,
store commits, a busy neighbour on the host); the drain rate folds all of that in, so the bound
is on how long an admitted turn really waits, not on a model's idea of it. All methods run on the
event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from assist.errors import ServerBusyError
from assist.service.cost import CostModel
from assist.service.metrics import Metrics

# A refusal within this many seconds still counts as "overloaded" for /readyz: between two
# refusals the backlog may dip under the bound for a moment, and a probe should not flap.
_OVERLOAD_HOLD_S = 5.0
# Longest retry_after given: a client told to wait minutes would rather fail over.
_MAX_RETRY_AFTER_S = 60
# Drain-rate limits (estimated work seconds completed per wall second). Below 1: the service is
# slower than the model says; above: faster (the model errs high, or two encoder lanes overlap).
# The floor keeps a stalled service refusing instead of dividing by zero.
_RATE_MIN, _RATE_MAX = 0.05, 4.0
# Weight of one one-second window in the drain-rate average.
_RATE_ALPHA = 0.3


class Priority(IntEnum):
    """Who waits for a piece of encoder work; lower is served first."""

    live = 0  # a console or a REST caller is waiting
    departed = 1  # acknowledged, but its console has gone
    background = 2  # reindex


@dataclass(eq=False)
class Ticket:
    """One admitted turn's share of the backlog."""

    conversation_id: str
    encoder_s: float
    cpu_s: float
    pinned: bool  # counted as live whoever watches the conversation (a REST caller is waiting)
    open: bool = True

    @property
    def cost_s(self) -> float:
        return self.encoder_s + self.cpu_s


class Admission:
    """The backlog in estimated seconds, split live / departed, and the admit-or-refuse decision.

    Args:
        cost: the cost model that prices turns.
        limit_s: most seconds of live work admitted and unfinished (``ASSIST_ADMIT_BACKLOG_S``).
        total_limit_s: most seconds of all work (``ASSIST_ADMIT_BACKLOG_TOTAL_S``).
        metrics: where backlog gauges and admitted/refused counts go.
    """

    def __init__(self, cost: CostModel, *, limit_s: float, total_limit_s: float, metrics: Metrics | None = None
                 ) -> None:
        self.cost = cost
        self.limit_s = limit_s
        self.total_limit_s = max(total_limit_s, limit_s)
        self.metrics = metrics or Metrics()
        self._by_conversation: dict[str, float] = {}  # unpinned open cost per conversation
        self._live: set[str] = set()  # conversations with a subscribed console
        self._pinned_s = 0.0
        self._live_s = 0.0
        self._departed_s = 0.0
        self._open = 0
        self._refused_at = -math.inf
        self._done_s = 0.0  # estimated work completed (cumulative), for the drain rate
        self._window: tuple[float, float, bool] | None = None  # (time, done, had backlog) at last sample
        self.rate = 1.0  # drain rate: estimated work seconds completed per wall second
        self._rate_avg = 1.0
        # Largest amount by which an admitted (not forced) turn left the live wait above the bound,
        # or above its own cost when it was admitted to an empty backlog; <= 0 while the bound holds.
        self.peak_over_s = -math.inf

    # --- state -----------------------------------------------------------------------------

    @property
    def live_work_s(self) -> float:
        """Estimated seconds of work admitted and unfinished for live conversations."""
        return self._pinned_s + self._live_s

    @property
    def work_s(self) -> float:
        """Estimated seconds of all admitted, unfinished work."""
        return self.live_work_s + self._departed_s

    @property
    def live_s(self) -> float:
        """Seconds the live backlog takes to drain at the measured rate (what ``limit_s`` bounds)."""
        return self.live_work_s / self.rate

    @property
    def departed_s(self) -> float:
        return self._departed_s / self.rate

    @property
    def backlog_s(self) -> float:
        """Seconds all admitted work takes to drain (what ``total_limit_s`` bounds)."""
        return self.work_s / self.rate

    @property
    def open_tickets(self) -> int:
        return self._open

    def overloaded(self, now: float | None = None) -> bool:
        """True while the live backlog is at its bound or a turn was refused a moment ago."""
        now = time.monotonic() if now is None else now
        return self.live_s >= self.limit_s or now - self._refused_at < _OVERLOAD_HOLD_S

    def is_live(self, conversation_id: str) -> bool:
        return conversation_id in self._live

    def priority(self, ticket: Ticket) -> Priority:
        """How the encoder should rank this turn's embedding now (watchers come and go)."""
        return Priority.live if ticket.pinned or ticket.conversation_id in self._live else Priority.departed

    def set_live(self, conversation_id: str, live: bool) -> None:
        """A console subscribed to (``True``) or left (``False``) the conversation: move its backlog."""
        if live == (conversation_id in self._live):
            return
        held = self._by_conversation.get(conversation_id, 0.0)
        if live:
            self._live.add(conversation_id)
            self._live_s += held
            self._departed_s -= held
        else:
            self._live.discard(conversation_id)
            self._live_s -= held
            self._departed_s += held
        self._publish()

    # --- admit / release -----------------------------------------------------------------------

    def admit(self, conversation_id: str, *, tokens: int | None, pinned: bool = False, force: bool = False
              ) -> Ticket:
        """Admit one turn (``tokens``: its text's token count; None for an agent turn, not embedded).

        Raises:
            ServerBusyError: the backlog would exceed a bound; ``retry_after`` says when to resend.
        """
        ticket = Ticket(conversation_id, 0.0 if tokens is None else self.cost.encoder_s(tokens),
                        self.cost.turn_cpu_s, pinned)
        if not force:
            self._check(ticket)
        self._add(ticket, ticket.cost_s)
        self._open += 1
        self.metrics.admit_turns.labels(outcome="forced" if force else "admitted").inc()
        if not force and self.priority(ticket) is Priority.live:
            allowed = max(self.limit_s, ticket.cost_s / self.rate)
            self.peak_over_s = max(self.peak_over_s, self.live_s - allowed)
        self._publish()
        return ticket

    def precheck(self, conversation_id: str, *, pinned: bool = False) -> None:
        """Refuse at once when even a turn with no encoder work would not fit: under overload most
        turns are refused, and this spares them the token count.

        Raises:
            ServerBusyError: as :meth:`admit`.
        """
        self._check(Ticket(conversation_id, 0.0, self.cost.turn_cpu_s, pinned))

    def _check(self, ticket: Ticket) -> None:
        live = self.priority(ticket) is Priority.live
        cost = ticket.cost_s / self.rate
        excess = 0.0
        if live and self.live_work_s > 0:
            excess = self.live_s + cost - self.limit_s
        if self.work_s > 0:
            excess = max(excess, self.backlog_s + cost - self.total_limit_s)
        if excess <= 0:
            return
        self._refused_at = time.monotonic()
        self.metrics.admit_turns.labels(outcome="refused").inc()
        # The excess is in seconds at the measured drain rate: it is gone in about as many seconds.
        retry_after = min(_MAX_RETRY_AFTER_S, max(1, math.ceil(excess)))
        raise ServerBusyError(
            f"the service is busy (backlog {self.backlog_s:.1f} s to drain, live {self.live_s:.1f} s, "
            f"bound {self.limit_s:g} s); resend the turn in {retry_after} s",
            retry_after=retry_after,
        )

    def embedded(self, ticket: Ticket) -> None:
        """The turn's embedding is done: its encoder seconds leave the backlog."""
        if ticket.open and ticket.encoder_s:
            self._add(ticket, -ticket.encoder_s)
            ticket.encoder_s = 0.0
            self._publish()

    def release(self, ticket: Ticket) -> None:
        """The turn is processed (or failed, or was a duplicate): the rest of its cost leaves."""
        if not ticket.open:
            return
        ticket.open = False
        self._add(ticket, -ticket.cost_s)
        self._open -= 1
        if self._open == 0:
            # Nothing admitted is open: clear the float dust of many additions and subtractions.
            # (Completed work stays counted for the drain rate.)
            self._by_conversation.clear()
            self._pinned_s = self._live_s = self._departed_s = 0.0
        self._publish()

    def _add(self, ticket: Ticket, amount: float) -> None:
        if amount < 0:
            self._done_s -= amount
        if ticket.pinned:
            self._pinned_s += amount
            return
        cid = ticket.conversation_id
        held = self._by_conversation.get(cid, 0.0) + amount
        if held > 1e-12:
            self._by_conversation[cid] = held
        else:
            self._by_conversation.pop(cid, None)
        if cid in self._live:
            self._live_s += amount
        else:
            self._departed_s += amount

    def _publish(self) -> None:
        self.metrics.admit_backlog_live.set(round(max(0.0, self.live_s), 4))
        self.metrics.admit_backlog_departed.set(round(max(0.0, self.departed_s), 4))

    def sample(self, now: float | None = None) -> None:
        """Update the drain rate from the work completed since the last call (about once a second).

        Only windows with a backlog at both ends count: an idle service drains nothing and says
        nothing about its speed.
        """
        now = time.monotonic() if now is None else now
        busy = self._open > 0
        if self._window is not None:
            t, done, was_busy = self._window
            if was_busy and busy and now > t:
                measured = min(_RATE_MAX, max(_RATE_MIN, (self._done_s - done) / (now - t)))
                self._rate_avg += _RATE_ALPHA * (measured - self._rate_avg)
                # Down at once, up slowly: work admitted in a fast second drains in the slow ones
                # that follow (a neighbour's burst on a shared host), so err towards the slower figure.
                self.rate = min(self._rate_avg, measured)
                self.metrics.admit_drain_rate.set(round(self.rate, 4))
                self._publish()
        self._window = (now, self._done_s, busy)

    def snapshot(self) -> dict[str, float | bool]:
        """Figures for /readyz."""
        return {"overloaded": self.overloaded(), "backlog_s": round(max(0.0, self.backlog_s), 3),
                "live_backlog_s": round(max(0.0, self.live_s), 3), "limit_s": self.limit_s,
                "drain_rate": round(self.rate, 3)}


async def sample_costs(cost: CostModel, admission: Admission, *, turns: Callable[[], float],
                       worker_cpu_s: Callable[[], float], metrics: Metrics | None = None,
                       interval_s: float = 1.0, min_turns: int = 5) -> None:
    """Measure, forever, the CPU per processed turn outside the encoder (into ``cost``) and the
    drain rate (:meth:`Admission.sample`).

    CPU per window: the event loop thread's (``time.thread_time`` here, on the loop) plus what the
    turn workers reported (``worker_cpu_s``, cumulative), over the turns processed (``turns``,
    cumulative). Windows with fewer than ``min_turns`` turns are skipped: idle housekeeping would
    otherwise be charged to a handful of turns. Also publishes the cost model's figures to ``metrics``.
    """
    last = (time.thread_time(), worker_cpu_s(), turns())
    while True:
        await asyncio.sleep(interval_s)
        admission.sample()
        if metrics is not None:
            metrics.encoder_scale.set(round(cost.scale, 4))
            metrics.turn_cpu.set(round(cost.turn_cpu_s, 5))
        now = (time.thread_time(), worker_cpu_s(), turns())
        done = now[2] - last[2]
        if done >= min_turns:
            cost.observe_turn_cpu(((now[0] - last[0]) + (now[1] - last[1])) / done)
            last = now
        elif done == 0:  # an idle window: its housekeeping is not charged to the next turns
            last = now
