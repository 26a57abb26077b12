"""Service metrics in the Prometheus text format (``GET /metrics``).

A few counters, gauges and histograms written by hand: the service needs five series, and the
exposition format is simple enough that a dependency would cost more than these lines. All
updates happen on the event loop thread, so no locking is needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

# Turn latency buckets in seconds: the fast-path target is p50 <= 30 ms, p99 <= 120 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.12, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


@dataclass
class Counter:
    name: str
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for key, v in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(dict(key))} {v:g}")
        if not self.values:
            lines.append(f"{self.name} 0")
        return lines


@dataclass
class Gauge:
    name: str
    help: str
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.value:g}"]


@dataclass
class Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.n}')
        lines.append(f"{self.name}_sum {self.total:g}")
        lines.append(f"{self.name}_count {self.n}")
        return lines


class Metrics:
    """The service's series. One instance per app (tests build their own)."""

    def __init__(self) -> None:
        self.turns = Counter("assist_turns_processed_total", "Turns processed, by role.")
        self.turn_latency = Histogram(
            "assist_turn_latency_seconds", "Time from a turn's arrival to its analysis being queued.",
            LATENCY_BUCKETS,
        )
        self.errors = Counter("assist_errors_total", "Errors answered to clients, by code.")
        self.ws_connections = Gauge("assist_ws_connections", "Open WebSocket connections.")
        self.ws_slow_closed = Counter("assist_ws_slow_consumer_closed_total",
                                      "Connections closed because their send queue was full.")
        self.batch_size = Histogram("assist_embed_batch_size", "Texts per embedding batch.", BATCH_BUCKETS)
        self.frames = Counter("assist_frames_total", "Server frames stored, by type.")
        self.admit_turns = Counter("assist_admit_turns_total",
                                   "Turns offered to admission control, by outcome (admitted, refused, forced).")
        self.admit_backlog_live = Gauge("assist_admit_backlog_live_seconds",
                                        "Seconds to drain the admitted, unfinished work of live conversations.")
        self.admit_backlog_departed = Gauge(
            "assist_admit_backlog_departed_seconds",
            "Seconds to drain the admitted, unfinished work whose console has gone.")
        self.admit_drain_rate = Gauge("assist_admit_drain_rate",
                                      "Estimated work seconds completed per second while there is a backlog.")
        self.encoder_scale = Gauge("assist_encoder_cost_scale",
                                   "Observed / modelled encoder time (the cost model's online correction).")
        self.turn_cpu = Gauge("assist_turn_cpu_seconds", "Measured CPU per turn outside the encoder (moving average).")

    def render(self) -> str:
        """The whole exposition, one text document."""
        lines: list[str] = []
        for series in (self.turns, self.turn_latency, self.errors, self.ws_connections,
                       self.ws_slow_closed, self.batch_size, self.frames, self.admit_turns,
                       self.admit_backlog_live, self.admit_backlog_departed, self.admit_drain_rate,
                       self.encoder_scale, self.turn_cpu):
            lines.extend(series.render())
        return "\n".join(lines) + "\n"
