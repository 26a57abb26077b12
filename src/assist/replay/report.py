"""Build a replay's report: ``report.json`` for tools, ``report.html`` for people.

``report.json`` (format ``assist-replay-report``, :data:`FORMAT_VERSION`) has stable top-level
keys (:data:`REPORT_KEYS`) and a flat ``summary`` whose keys never depend on the data
(:func:`assist.replay.metrics.summary_keys`; an unmeasured metric is ``null``). Bump
``FORMAT_VERSION`` when a key changes meaning or disappears; adding keys does not need a bump.

``report.html`` is one self-contained page — inline CSS, inline SVG charts drawn here, a few
lines of inline JS for the error table filter — so it can be mailed, archived or opened offline,
and it never fetches anything. Every piece of log text is HTML-escaped: logs are customer input.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assist import __version__
from assist.replay import metrics as m
from assist.replay.parse import ParsedLogs
from assist.replay.results import ConversationResult

FORMAT = "assist-replay-report"
FORMAT_VERSION = 1
REPORT_KEYS: tuple[str, ...] = (
    "format", "format_version", "generated_at", "assist_version", "input", "shop", "config", "summary",
    "metrics", "latency_histogram", "conversations", "worst_conversations", "errors",
)
WORST_N = 6


# ---------------------------------------------------------------- report.json


def _conversation_rows(conversations: Sequence[ConversationResult], errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_conv: dict[str, int] = {}
    for e in errs:
        per_conv[e["conversation_id"]] = per_conv.get(e["conversation_id"], 0) + 1
    rows = []
    for c in conversations:
        trend = [{"turn_id": t.turn_id, "score": t.sentiment_score, "label": t.sentiment,
                  "gold": None if t.gold is None or t.gold.sentiment is None else str(t.gold.sentiment)}
                 for t in c.turns if t.role == "customer" and t.sentiment_score is not None]
        scores = [p["score"] for p in trend]
        rows.append({
            "conversation_id": c.conversation_id, "line": c.line, "turns": len(c.turns),
            "customer_turns": sum(1 for t in c.turns if t.role == "customer"),
            "errors": per_conv.get(c.conversation_id, 0), "error": c.error,
            "min_sentiment": min(scores) if scores else None,
            "mean_sentiment": round(sum(scores) / len(scores), 4) if scores else None,
            "sentiment": trend,
        })
    return rows


def worst_conversations(rows: Sequence[dict[str, Any]], n: int = WORST_N) -> list[str]:
    """Ids of the ``n`` conversations whose customers sounded worst: lowest minimum sentiment score,
    then lowest mean, then id (so the choice is deterministic)."""
    scored = [r for r in rows if r["min_sentiment"] is not None]
    scored.sort(key=lambda r: (r["min_sentiment"], r["mean_sentiment"], r["conversation_id"]))
    return [r["conversation_id"] for r in scored[:n]]


def build_report(
    conversations: Sequence[ConversationResult],
    parsed: ParsedLogs,
    *,
    shop: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    input_sha256: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Assemble the report dict (what ``report.json`` holds) from replayed conversations.

    Args:
        conversations: the replay's results, in log order.
        parsed: the parse result (its problems and warnings go in ``input``).
        shop: description of the shop replayed against (dir, sizes, content hash).
        config: replay settings worth recording (encoder, batch size, ...).
        input_sha256: hash of the log file, so two reports can be checked to be on the same data.
    """
    metrics = m.compute(conversations)
    errs = m.errors(conversations)
    turns = [t for c in conversations for t in c.turns]
    failed_turns = sum(1 for t in turns if t.error)
    failed_convs = sum(1 for c in conversations if c.error or any(t.error for t in c.turns))
    summary = m.summarise(metrics, conversations=len(conversations), turns=len(turns),
                          skipped_lines=parsed.skipped_lines, failed_conversations=failed_convs,
                          failed_turns=failed_turns)
    rows = _conversation_rows(conversations, errs)
    totals = [t.timings_ms["total"] for t in turns if "total" in t.timings_ms and not t.error]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generated_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "assist_version": __version__,
        "input": {
            "source": parsed.source, "sha256": input_sha256, "lines": parsed.lines,
            "conversations": len(conversations), "turns": len(turns),
            "customer_turns": sum(1 for t in turns if t.role == "customer"),
            "agent_turns": sum(1 for t in turns if t.role == "agent"),
            "skipped_lines": parsed.skipped_lines,
            "problems": [p.__dict__ for p in parsed.problems],
            "warnings": [p.__dict__ for p in parsed.warnings],
        },
        "shop": shop or {},
        "config": {"action_top_k": m.ACTION_TOP_K, "kb_ks": list(m.KB_KS), **(config or {})},
        "summary": summary,
        "metrics": metrics,
        "latency_histogram": {"stage": "total", **m.histogram(totals),
                              **{f"p{q}": metrics["latency"]["total"][f"p{q}"] for q in m.PERCENTILES}},
        "conversations": rows,
        "worst_conversations": worst_conversations(rows),
        "errors": errs,
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_report(report: dict[str, Any], out_dir: Path,
                 conversations: Sequence[ConversationResult] | None = None) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` (and ``turns.jsonl``, every prediction, when
    ``conversations`` is given) into ``out_dir``; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    if conversations is not None:
        paths["turns"] = out_dir / "turns.jsonl"
        with paths["turns"].open("w", encoding="utf-8") as fh:
            for c in conversations:
                for t in c.turns:
                    fh.write(json.dumps(t.to_dict(), ensure_ascii=False, default=str) + "\n")
    return paths


# ---------------------------------------------------------------- SVG charts (pure string builders)

_E = html.escape
_PALETTE = ("#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x * 100:.1f}%" if pct else f"{x:.2f}"


def _empty_svg(chart: str, message: str) -> str:
    return (f'<svg class="chart" data-chart="{chart}" viewBox="0 0 480 60" role="img">'
            f'<text x="240" y="34" text-anchor="middle" class="muted">{_E(message)}</text></svg>')


def _mix(rgb: tuple[int, int, int], t: float) -> str:
    # White at t=0, the full colour at t=1.
    r, g, b = (round(255 + (c - 255) * t) for c in rgb)
    return f"rgb({r},{g},{b})"


def svg_confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], chart: str = "confusion") -> str:
    """Heat map: rows = gold, columns = predicted; colour = share of the row (blue right, red wrong)."""
    n = len(labels)
    if n == 0:
        return _empty_svg(chart, "no gold labels to score")
    cell, left, top = 34, 150, 120
    # Right margin: the rotated column labels lean right, past the last column.
    w, h = left + n * cell + 110, top + n * cell + 30
    parts = [f'<svg class="chart" data-chart="{chart}" viewBox="0 0 {w} {h}" role="img" '
             f'style="max-width:{w}px"><title>confusion matrix (rows: gold, columns: predicted)</title>']
    for i, lab in enumerate(labels):
        y = top + i * cell + cell / 2 + 4
        parts.append(f'<text x="{left - 6}" y="{y:.0f}" text-anchor="end" class="axis">{_E(lab)}</text>')
        x = left + i * cell + cell / 2 + 4
        parts.append(f'<text transform="translate({x:.0f},{top - 6}) rotate(-50)" class="axis">{_E(lab)}</text>')
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, v in enumerate(row):
            share = v / total
            fill = _mix((31, 119, 180) if i == j else (214, 39, 40), share) if v else "#fafafa"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}" '
                         f'stroke="#e3e3e3"><title>gold {_E(labels[i])} → predicted {_E(labels[j])}: {v}'
                         f' ({share * 100:.0f}% of the row)</title></rect>')
            if v:
                colour = "#fff" if share > 0.55 else "#222"
                parts.append(f'<text x="{x + cell / 2 - 1:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle" '
                             f'class="cell" fill="{colour}">{v}</text>')
    parts.append(f'<text x="{left + n * cell / 2:.0f}" y="{h - 8}" text-anchor="middle" class="muted">'
                 f'predicted →   (rows: gold)</text></svg>')
    return "".join(parts)


def svg_bars(items: Sequence[tuple[str, float | None, str]], chart: str, *, max_value: float = 1.0,
             pct: bool = True) -> str:
    """Horizontal bars: (label, value, note) each; ``None`` values are drawn as "not measured"."""
    if not items:
        return _empty_svg(chart, "nothing to show")
    row, left, width = 24, 160, 300
    h = len(items) * row + 30
    w = left + width + 110
    parts = [f'<svg class="chart" data-chart="{chart}" viewBox="0 0 {w} {h}" role="img" style="max-width:{w}px">']
    for i, (label, value, note) in enumerate(items):
        y = 10 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="axis">{_E(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{width}" height="{row - 8}" fill="#f1f1f1"/>')
        if value is not None:
            bw = max(0.0, min(1.0, value / max_value)) * width
            colour = "#2ca02c" if value >= 0.8 * max_value else "#ff7f0e" if value >= 0.5 * max_value else "#d62728"
            parts.append(f'<rect x="{left}" y="{y + 2}" width="{bw:.1f}" height="{row - 8}" fill="{colour}">'
                         f'<title>{_E(label)}: {_fmt(value, pct)} {_E(note)}</title></rect>')
        parts.append(f'<text x="{left + width + 6}" y="{y + 14}" class="axis">{_fmt(value, pct)} '
                     f'<tspan class="muted">{_E(note)}</tspan></text>')
    for frac in (0.0, 0.5, 1.0):
        x = left + frac * width
        parts.append(f'<line x1="{x:.0f}" x2="{x:.0f}" y1="6" y2="{h - 18}" stroke="#bbb" stroke-dasharray="2,3"/>'
                     f'<text x="{x:.0f}" y="{h - 4}" text-anchor="middle" class="muted">'
                     f'{_fmt(frac * max_value, pct)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(hist: dict[str, Any], chart: str = "latency") -> str:
    """Latency histogram with p50 and p95 marked; the last (red) bar collects values above p99."""
    counts: list[int] = list(hist.get("counts") or [])
    edges: list[float] = list(hist.get("edges") or [])
    if not counts or (not any(counts) and not hist.get("overflow")):
        return _empty_svg(chart, "no latency measured")
    bars = [*counts, hist.get("overflow", 0)]
    left, bottom, width, height = 50, 30, 520, 180
    w, h = left + width + 20, height + bottom + 20
    bw = width / len(bars)
    top = max(bars) or 1
    parts = [f'<svg class="chart" data-chart="{chart}" viewBox="0 0 {w} {h}" role="img" style="max-width:{w}px">'
             f'<title>turn latency, ms</title>']
    for i, v in enumerate(bars):
        bh = v / top * height
        x, y = left + i * bw, 10 + height - bh
        over = i == len(bars) - 1
        lo = edges[i] if i < len(edges) else edges[-1]
        hi = edges[i + 1] if i + 1 < len(edges) else None
        label = f"> {lo:.1f} ms" if over or hi is None else f"{lo:.1f}–{hi:.1f} ms"
        parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
                     f'fill="{"#d62728" if over else "#1f77b4"}"><title>{label}: {v} turn(s)</title></rect>')
    base = 10 + height
    parts.append(f'<line x1="{left}" x2="{left + width}" y1="{base}" y2="{base}" stroke="#888"/>')
    # Tick labels on the bin edges, leaving the last one out: the overflow bar carries ">p99" there.
    for i in range(0, len(edges) - 1, max(1, len(edges) // 5)):
        x = left + i * bw
        parts.append(f'<text x="{x:.0f}" y="{base + 16}" text-anchor="middle" class="muted">{edges[i]:.0f}</text>')
    top_edge = edges[-1] if edges and edges[-1] > 0 else 1.0
    for name, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e")):
        v = hist.get(name)
        if v is None or v > top_edge:
            continue
        x = left + v / top_edge * (width - bw)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="10" y2="{base}" stroke="{colour}" stroke-width="1.5" '
                     f'stroke-dasharray="4,3"><title>{name} {v:.1f} ms</title></line>'
                     f'<text x="{x + 3:.1f}" y="{22 if name == "p50" else 36}" class="axis" fill="{colour}" stroke="#fff" stroke-width="3" paint-order="stroke">'
                     f'{name} {v:.0f} ms</text>')
    parts.append(f'<text x="{left + width - bw / 2:.0f}" y="{base + 16}" text-anchor="middle" class="muted">'
                 f'&gt;p99</text>')
    parts.append(f'<text x="{left - 8}" y="16" text-anchor="end" class="muted">{top}</text>'
                 f'<text x="{left + width / 2:.0f}" y="{h - 2}" text-anchor="middle" class="muted">ms per turn</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_trend(rows: Sequence[dict[str, Any]], chart: str = "sentiment-trend") -> str:
    """Sentiment score (-1..1) per customer turn, one line per conversation; gold-negative turns ringed."""
    series = [r for r in rows if r["sentiment"]]
    if not series:
        return _empty_svg(chart, "no customer turns with a sentiment score")
    left, width, height, top = 40, 460, 200, 10
    legend_w = 170
    w, h = left + width + legend_w, top + height + 34
    longest = max(len(r["sentiment"]) for r in series)
    step = width / max(longest - 1, 1)

    def y_of(score: float) -> float:
        return top + (1 - (score + 1) / 2) * height

    parts = [f'<svg class="chart" data-chart="{chart}" viewBox="0 0 {w} {h}" role="img" style="max-width:{w}px">'
             f'<title>sentiment of the worst conversations</title>']
    for v in (-1, -0.5, 0, 0.5, 1):
        y = y_of(v)
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{"#999" if v == 0 else "#e5e5e5"}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="muted">{v:+.1f}</text>')
    for k in range(longest):
        parts.append(f'<text x="{left + k * step:.1f}" y="{top + height + 16}" text-anchor="middle" '
                     f'class="muted">{k + 1}</text>')
    parts.append(f'<text x="{left + width / 2:.0f}" y="{h - 2}" text-anchor="middle" class="muted">'
                 f'customer turn</text>')
    for idx, r in enumerate(series):
        colour = _PALETTE[idx % len(_PALETTE)]
        pts = [(left + k * step, y_of(float(p["score"]))) for k, p in enumerate(r["sentiment"])]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), p in zip(pts, r["sentiment"], strict=True):
            ring = ' stroke="#000" stroke-width="1.5"' if p.get("gold") == "negative" else ""
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"{ring}><title>'
                         f'{_E(r["conversation_id"])} / {_E(p["turn_id"])}: {float(p["score"]):+.2f} '
                         f'predicted {_E(str(p["label"]))}, gold {_E(str(p.get("gold") or "–"))}</title></circle>')
        ly = top + 14 + idx * 20
        parts.append(f'<rect x="{left + width + 16}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{left + width + 34}" y="{ly + 1}" class="axis">{_E(r["conversation_id"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- the page

_CSS = """
:root{--fg:#1d1d1f;--muted:#6e6e73;--line:#e3e3e6;--bad:#c62828;--ok:#2e7d32;--warn:#ef6c00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",
  sans-serif;color:var(--fg);background:#f6f6f8}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}
.muted{color:var(--muted);fill:#6e6e73;font-size:11px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:16px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fff}
.card .v{font-size:22px;font-weight:600}.card .k{color:var(--muted);font-size:12px}
.card.bad{border-color:var(--bad);background:#fff5f5}.card.bad .v{color:var(--bad)}
.card.good .v{color:var(--ok)}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.grid2.wide-left{grid-template-columns:3fr 2fr}
@media(max-width:900px){.grid2,.grid2.wide-left{grid-template-columns:1fr}}
svg.chart{width:100%;height:auto;display:block}
svg .axis{font-size:11px;fill:#333}svg .cell{font-size:11px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#fafafa;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:360px}
.kind{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;background:#eee}
.kind.cross_sell_violation,.kind.failed{background:#ffd6d6;color:#8e0000}
.kind.intent{background:#e3f0ff}.kind.sentiment{background:#fff1d6}.kind.kb{background:#e8f6e8}
.filters{display:flex;gap:8px;margin-bottom:8px;flex-wrap:wrap}
.filters input,.filters select{padding:5px 8px;border:1px solid var(--line);border-radius:6px;font:inherit}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:6px}
.note{font-size:12px;color:var(--muted)}
.warnbox{border-left:4px solid var(--warn);background:#fff8ef;padding:8px 12px;margin:8px 0}
code{font-size:12px;background:#f3f3f3;padding:0 4px;border-radius:3px}
"""

_JS = """
(function(){
  var q=document.getElementById('err-q'),k=document.getElementById('err-kind'),
      rows=document.querySelectorAll('#errors tbody tr'),count=document.getElementById('err-count');
  function apply(){
    var text=(q.value||'').toLowerCase(),kind=k.value,shown=0;
    rows.forEach(function(r){
      var ok=(!kind||r.dataset.kind===kind)&&(!text||r.textContent.toLowerCase().indexOf(text)>=0);
      r.style.display=ok?'':'none'; if(ok)shown++;
    });
    count.textContent=shown+' shown';
  }
  if(q){q.addEventListener('input',apply);k.addEventListener('change',apply);apply();}
})();
"""


def _card(label: str, value: str, cls: str = "", note: str = "") -> str:
    return (f'<div class="card {cls}"><div class="v">{_E(value)}</div><div class="k">{_E(label)}'
            f'{"<br>" + _E(note) if note else ""}</div></div>')


def _json_cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return _E(v)
    return _E(json.dumps(v, ensure_ascii=False))


def _cards(s: dict[str, Any]) -> str:
    viol = s.get("cross_sell.violations")
    p95 = s.get("latency.total.p95")
    cards = [
        _card("intent accuracy", _fmt(s["intent.accuracy"]), note=f"macro-F1 {_fmt(s['intent.macro_f1'])} · n={s['intent.n']}"),
        _card("sentiment accuracy", _fmt(s["sentiment.accuracy"]),
              note=f"macro-F1 {_fmt(s['sentiment.macro_f1'])} · n={s['sentiment.n']}"),
        _card("KB recall@1", _fmt(s["kb.recall_at_1"]),
              note=f"@5 {_fmt(s['kb.recall_at_5'])} · MRR {_fmt(s['kb.mrr'], False)} · n={s['kb.n']}"),
        _card("action precision", _fmt(s["actions.precision"]),
              note=f"recall {_fmt(s['actions.recall'])} · n={s['actions.n']}"),
        _card("cross-sell violations", "–" if viol is None else str(viol),
              "bad" if viol else "good", note=f"of {s['cross_sell.n_not_ok']} turns where it is wrong"),
        _card("missed cross-sell", str(s["cross_sell.missed"]),
              note=f"of {s['cross_sell.opportunities']} opportunities"),
        _card("QA flag precision", _fmt(s["qa.precision"]), note=f"recall {_fmt(s['qa.recall'])} · n={s['qa.n']}"),
        _card("latency p50 / p95", "–" if p95 is None else f"{s['latency.total.p50']:.0f} / {p95:.0f} ms",
              note=f"p99 {_fmt(s['latency.total.p99'], False)} ms"),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], attrs: str = "") -> str:
    head = "".join(f"<th>{_E(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(v: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{v}</td>'


def _pr_rows(per: dict[str, Any]) -> list[list[str]]:
    return [[_td(_E(k)), _td(_fmt(v["precision"]), "num"), _td(_fmt(v["recall"]), "num"),
             _td(_fmt(v["f1"]), "num"), _td(str(v["tp"]), "num"), _td(str(v["fp"]), "num"),
             _td(str(v["fn"]), "num")] for k, v in per.items()]


def _unlabelled_note(qa: dict[str, Any]) -> str:
    raised = qa.get("unlabelled_raised") or {}
    if not raised:
        return ""
    items = ", ".join(f"<code>{_E(k)}</code> ×{v}" for k, v in raised.items())
    return (f'<p class="note">Raised but labelled nowhere in these logs (not scored, not in the error list): '
            f"{items}. Label them in gold <code>qa</code> to score them.</p>")


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (no external URL anywhere)."""
    s = report["summary"]
    mt = report["metrics"]
    inp = report["input"]
    shop = report.get("shop") or {}
    intent = mt["intent"]
    sent = mt["sentiment"]
    per_intent = [(lab, v["f1"], f"n={v['support']}") for lab, v in intent["per_label"].items()]
    worst_ids = report["worst_conversations"]
    by_id = {r["conversation_id"]: r for r in report["conversations"]}
    worst_rows = [by_id[i] for i in worst_ids if i in by_id]

    problems = inp.get("problems") or []
    problem_html = ""
    if problems:
        problem_html = (f'<div class="warnbox"><b>{inp["skipped_lines"]} line(s) skipped</b> — malformed records '
                        f'(not replayed):</div>' + _table(
                            ["line", "field", "problem"],
                            [[_td(str(p["line"]), "num"), _td(f"<code>{_E(p['field'])}</code>"), _td(_E(p["message"]))]
                             for p in problems]))
    warnings = inp.get("warnings") or []
    if warnings:
        problem_html += (f'<p class="note">{len(warnings)} warning(s): '
                         + "; ".join(_E(f"line {w['line']} {w['field']}: {w['message']}") for w in warnings[:20])
                         + ("…" if len(warnings) > 20 else "") + "</p>")

    lat_rows = [[_td(_E(stage)), _td(str(v["n"]), "num"), _td(_fmt(v["p50"], False), "num"),
                 _td(_fmt(v["p95"], False), "num"), _td(_fmt(v["p99"], False), "num"),
                 _td(_fmt(v["mean"], False), "num"), _td(_fmt(v["max"], False), "num")]
                for stage, v in mt["latency"].items() if v["n"]]

    errors = report["errors"]
    kinds = sorted({e["kind"] for e in errors})
    err_rows = []
    for e in errors:
        conv = _E(e["conversation_id"]) + ' <span class="muted">line ' + str(e["line"]) + "</span>"
        kind = _E(e["kind"])
        badge = '<span class="kind ' + kind + '">' + kind + "</span>"
        err_rows.append(
            f'<tr data-kind="{kind}">{_td(conv)}{_td(_E(e["turn_id"] or "–"))}{_td(badge)}'
            f'{_td(_json_cell(e["expected"]))}{_td(_json_cell(e["predicted"]))}{_td(_E(e["text"]), "text")}</tr>')
    err_table = (f'<table id="errors"><thead><tr><th>conversation</th><th>turn</th><th>kind</th><th>expected</th>'
                 f'<th>predicted</th><th>text</th></tr></thead><tbody>{"".join(err_rows)}</tbody></table>')
    kind_opts = "".join(f'<option value="{_E(k)}">{_E(k)} ({sum(1 for e in errors if e["kind"] == k)})</option>'
                        for k in kinds)

    cs = mt["cross_sell"]
    act = mt["actions"]
    qa = mt["qa"]
    shop_line = (f'shop <code>{_E(str(shop.get("dir", "?")))}</code> · {shop.get("kb_entries", "?")} KB entries · '
                 f'{shop.get("catalog_items", "?")} SKUs') if shop else ""
    body = f"""
<main>
<header>
  <h1>assist replay report</h1>
  <div class="note">{_E(str(inp["source"]))} · {inp["conversations"]} conversations · {inp["turns"]} turns
  ({inp["customer_turns"]} customer, {inp["agent_turns"]} agent) · {shop_line}<br>
  generated {_E(report["generated_at"])} · assist {_E(report["assist_version"])} · report format v{report["format_version"]}</div>
  {problem_html}
</header>
<section><h2>Summary</h2>{_cards(s)}
<p class="note">Each metric counts only the turns whose gold carries it (n). Actions: a turn is credited with
the distinct types among its top {act["top_k"]} actions. A cross-sell violation is a cross_sell card anywhere on
a turn whose gold says <code>cross_sell_ok: false</code> — the target is zero.</p></section>

<section><h2>Intent</h2><div class="grid2 wide-left">
<div><h3 class="note">Confusion matrix (n={intent["n"]})</h3>{svg_confusion(intent["confusion"]["labels"], intent["confusion"]["matrix"], "intent-confusion")}</div>
<div><h3 class="note">F1 per intent</h3>{svg_bars(per_intent, "intent-f1")}</div>
</div></section>

<section><h2>Sentiment</h2><div class="grid2">
<div><h3 class="note">Trend of the {len(worst_rows)} conversations with the most negative customer turns
(circled: gold says negative)</h3>{svg_trend(worst_rows, "sentiment-trend")}</div>
<div><h3 class="note">Confusion matrix (n={sent["n"]}) · accuracy {_fmt(sent["accuracy"])} · macro-F1 {_fmt(sent["macro_f1"])}</h3>
{svg_confusion(sent["confusion"]["labels"], sent["confusion"]["matrix"], "sentiment-confusion")}</div>
</div></section>

<section><h2>Next-best actions</h2><div class="grid2">
<div>{_table(["type", "precision", "recall", "F1", "TP", "FP", "FN"], _pr_rows(act["per_type"]))}
<p class="note">micro precision {_fmt(act["precision"])} · recall {_fmt(act["recall"])} · exact set match
{_fmt(act["exact_match"])} · n={act["n"]} turns</p></div>
<div><h3 class="note">Cross-sell</h3>
<p><b class="{"bad" if cs["violations"] else ""}">{cs["violations"]}</b> violation(s) on {cs["n_not_ok"]} turns where a
cross-sell is wrong{(": " + ", ".join(_E(x) for x in cs["violation_turns"][:30])) if cs["violation_turns"] else ""}.<br>
<b>{cs["missed"]}</b> missed of {cs["opportunities"]} opportunities (recall {_fmt(cs["opportunity_recall"])}).</p>
{svg_bars([(t, v["recall"], f"n={v['support']}") for t, v in act["per_type"].items()], "action-recall")}
<p class="note">recall per action type</p></div>
</div></section>

<section><h2>Knowledge base</h2>
<p>recall@1 <b>{_fmt(mt["kb"]["recall_at_1"])}</b> · recall@5 <b>{_fmt(mt["kb"]["recall_at_5"])}</b> · MRR
<b>{_fmt(mt["kb"]["mrr"], False)}</b> over {mt["kb"]["n"]} turns with gold KB ids (a turn counts when any of its
gold entries is in the top k).</p></section>

<section><h2>Agent quality checks</h2>
{_table(["flag", "precision", "recall", "F1", "TP", "FP", "FN"],
        _pr_rows({k: v for k, v in qa["per_flag"].items() if v.get("labelled", True)}))}
{_unlabelled_note(qa)}
<p class="note">micro precision {_fmt(qa["precision"])} · recall {_fmt(qa["recall"])} · turn-level (any flag)
precision {_fmt(qa["turn_level"]["precision"])} / recall {_fmt(qa["turn_level"]["recall"])} · n={qa["n"]} agent turns</p>
</section>

<section><h2>Latency</h2><div class="grid2">
<div>{svg_histogram(report["latency_histogram"], "latency-histogram")}
<p class="note">Whole-turn processing time per turn in ms (last red bar: above p99). Replays batch embeddings,
so this is offline throughput per turn, not live latency under load (see <code>bench/</code>).</p></div>
<div>{_table(["stage", "n", "p50", "p95", "p99", "mean", "max"], lat_rows)}</div>
</div></section>

<section><h2>Errors ({len(errors)})</h2>
<div class="filters"><input id="err-q" type="search" placeholder="filter text, id, label…">
<select id="err-kind"><option value="">every kind</option>{kind_opts}</select>
<span id="err-count" class="note"></span></div>
<div class="scroll">{err_table}</div></section>
</main>"""
    return ("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>assist replay — {_E(str(inp['source']))}</title><style>{_CSS}</style></head>"
            f"<body>{body}<script>{_JS}</script></body></html>\n")
