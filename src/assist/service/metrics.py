"""Service metrics for Prometheus (``GET /metrics``), on ``prometheus-client``.

Every :class:`Metrics` owns its own ``CollectorRegistry``: nothing is registered in the library's
global default registry, so several apps in one process (the tests build many) never collide and
each ``/metrics`` shows only its own app. The library does the exposition: label values are
escaped (a ``"``, ``\\`` or newline in a value cannot break the format) and ``render`` answers in
the text format the scraper asks for (OpenMetrics when its ``Accept`` header says so).

Series::

    assist_turns_processed_total{role}              assist_turn_latency_seconds (histogram)
    assist_errors_total{code}                       assist_frames_total{type}
    assist_ws_connections (gauge)                   assist_ws_slow_consumer_closed_total
    assist_embed_batch_size (histogram)
    assist_suggestions_shown_total{type}            assist_suggestion_feedback_total{type,outcome}
    assist_quality_defects_total{event}             (recorded / retracted)
    assist_quality_alerts_total{event}              (raised / closed)
    assist_webhook_deliveries_total{topic,result}   (delivered / failed / dead)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

# Turn latency buckets in seconds: the fast-path target is p50 <= 30 ms, p99 <= 120 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.12, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's series, in a registry of their own. One instance per app (tests build their own)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.turns = Counter("assist_turns_processed_total", "Turns processed, by role.", ["role"], registry=r)
        self.turn_latency = Histogram(
            "assist_turn_latency_seconds", "Time from a turn's arrival to its analysis being queued.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.errors = Counter("assist_errors_total", "Errors answered to clients, by code.", ["code"], registry=r)
        self.ws_connections = Gauge("assist_ws_connections", "Open WebSocket connections.", registry=r)
        self.ws_slow_closed = Counter("assist_ws_slow_consumer_closed_total",
                                      "Connections closed because their send queue was full.", registry=r)
        self.batch_size = Histogram("assist_embed_batch_size", "Texts per embedding batch.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.frames = Counter("assist_frames_total", "Server frames stored, by type.", ["type"], registry=r)
        self.suggestions = Counter("assist_suggestions_shown_total", "Actions shown to agents, by type.",
                                   ["type"], registry=r)
        self.feedback = Counter("assist_suggestion_feedback_total",
                                "Agents' verdicts on suggestions, by type and outcome (accepted, dismissed, edited).",
                                ["type", "outcome"], registry=r)
        self.defects = Counter("assist_quality_defects_total",
                               "Confirmed defects recorded for the quality early warning, and retracted ones.",
                               ["event"], registry=r)
        self.quality_alerts = Counter("assist_quality_alerts_total", "Quality alerts raised and closed.",
                                      ["event"], registry=r)
        self.webhooks = Counter("assist_webhook_deliveries_total",
                                "Webhook delivery attempts, by topic and result (delivered, failed, dead).",
                                ["topic", "result"], registry=r)

        self.admit_turns = Counter("assist_admit_turns_total",
                                   "Turns offered to admission control, by outcome (admitted, refused, forced).",
                                   ["outcome"], registry=r)
        self.admit_backlog_live = Gauge("assist_admit_backlog_live_seconds",
                                        "Seconds to drain the admitted, unfinished work of live conversations.",
                                        registry=r)
        self.admit_backlog_departed = Gauge(
            "assist_admit_backlog_departed_seconds",
            "Seconds to drain the admitted, unfinished work whose console has gone.", registry=r)
        self.admit_drain_rate = Gauge("assist_admit_drain_rate",
                                      "Estimated work seconds completed per second while there is a backlog.",
                                      registry=r)
        self.encoder_scale = Gauge("assist_encoder_cost_scale",
                                   "Observed / modelled encoder time (the cost model's online correction).",
                                   registry=r)
        self.turn_cpu = Gauge("assist_turn_cpu_seconds", "Measured CPU per turn outside the encoder (moving average).",
                              registry=r)

    def turns_processed(self) -> float:
        """Turns processed so far, every role (the cost model's CPU-per-turn denominator)."""
        return sum(s.value for m in self.turns.collect() for s in m.samples if s.name.endswith("_total"))

    def webhook_result(self, topic: str, result: str) -> None:
        """One delivery attempt's result (``OutboxWorker.on_result``): every failed attempt counts as
        ``failed``, and one that exhausted the retries also as ``dead``."""
        self.webhooks.labels(topic=topic, result=result).inc()

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when it has none yet), e.g. ``value("assist_errors_total", code=...)``."""
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for: ``(body, content type)``."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
