"""/metrics on prometheus-client (assist.service.metrics): escaping, one registry per app, formats."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from assist.service.metrics import Metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    m = Metrics()
    nasty = 'say "hi"\\n\nnext line, {brace} 中文'
    m.errors.labels(code=nasty).inc()
    m.webhook_result("quality_alert.raised", "delivered")
    body, content_type = m.render()
    text = body.decode()
    assert content_type.startswith("text/plain; version=0.0.4")
    # the raw line: quote, backslash and newline escaped, so the line stays one line
    assert 'assist_errors_total{code="say \\"hi\\"\\\\n\\nnext line, {brace} 中文"} 1.0' in text.splitlines()
    samples = _samples(text)
    assert samples[("assist_errors_total", (("code", nasty),))] == 1.0
    assert samples[("assist_webhook_deliveries_total",
                    (("result", "delivered"), ("topic", "quality_alert.raised")))] == 1.0


def test_every_app_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.turns.labels(role="customer").inc(2)
    assert a.value("assist_turns_processed_total", role="customer") == 2
    assert b.value("assist_turns_processed_total", role="customer") == 0
    assert "assist_turns_processed_total{" not in b.render()[0].decode()


def test_openmetrics_when_the_scraper_asks() -> None:
    body, content_type = Metrics().render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")
