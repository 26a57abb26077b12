"""Agent-turn quality checks (DESIGN §5) -> ``qa_alert`` proposals, each with a ``code`` and the
offending ``span`` (character offsets into the agent's original text).

========================  ==================================================================
code                      what
========================  ==================================================================
``forbidden_promise``     guarantees and absolute claims (保证, 绝对, 一定 ...)
``superlative``           advertising-law superlatives (最好, 第一, 国家级, 顶级, 100% ...)
``rude``                  rude words towards the customer
``personal_data``         phone, ID, bank card numbers, street addresses typed into the chat
``promise_tracked``       a commitment with a deadline: tracked as an open promise
``promise_overdue``       a tracked promise whose deadline passed without being kept
``slow_first_response``   the first reply came later than ``qa.first_response_seconds``
``slow_response``         the Nth reply slower than ``qa.slow_response_seconds``
========================  ==================================================================

The word lists are ``qa.*`` in the policy data. Text is folded per character (full-width to
half-width, lower-case) before matching, so spans map one to one onto the original text. Personal
data is masked in the alert: the alert is stored and sent to the CRM, the data must not travel with it.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Any

from assist.policy.actions import ActionType, Proposal
from assist.policy.config import PersonalDataPattern, PolicyConfig, Span, compile_pattern
from assist.policy.promises import find_promises
from assist.state import ConversationState, aware, response_seconds

_QA_REASON = {
    "forbidden_promise": "绝对化承诺",
    "superlative": "广告法极限用语",
    "rude": "不文明用语",
    "personal_data": "聊天中出现个人信息",
    "promise_tracked": "带时限的承诺，已记录跟踪",
    "promise_overdue": "承诺已超时未兑现",
    "slow_first_response": "首次响应过慢",
    "slow_response": "多次回复过慢",
}

# How serious each code is, for ranking alerts among themselves (a red line first).
_SEVERITY = {"rude": 1.0, "personal_data": 0.95, "promise_overdue": 0.9, "forbidden_promise": 0.8,
             "superlative": 0.7, "slow_first_response": 0.6, "slow_response": 0.55, "promise_tracked": 0.3}


def fold(text: str) -> str:
    """Full-width -> half-width and lower-case, one character at a time (keeps offsets)."""
    out = []
    for ch in text:
        n = unicodedata.normalize("NFKC", ch)
        if len(n) != 1:
            n = ch  # e.g. "㎏" -> "kg" would shift every later offset
        low = n.lower()
        out.append(low if len(low) == 1 else n)
    return "".join(out)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_ok(s: str) -> bool:
    """Checksum (GB 11643) and a plausible birth date of an 18-character resident ID number."""
    s = s.upper()
    if len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2100:
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True)) % 11]
    return s[17] == check


def mask(text: str) -> str:
    """'13812345678' -> '138****5678'; short values keep only their first character."""
    keep_head, keep_tail = (3, 4) if len(text) >= 11 else (1, 0)
    if len(text) <= keep_head + keep_tail:
        return text[:1] + "*" * (len(text) - 1)
    return text[:keep_head] + "*" * (len(text) - keep_head - keep_tail) + text[len(text) - keep_tail:]


def _personal_spans(patterns: list[PersonalDataPattern], text: str) -> list[tuple[str, Span]]:
    out: list[tuple[str, Span]] = []
    taken: list[tuple[int, int]] = []
    for p in patterns:
        for m in compile_pattern(p.pattern).finditer(text):
            value = m.group(0)
            digits = value.replace("-", "").replace(" ", "")
            if p.check == "luhn" and not luhn_ok(digits):
                continue
            if p.check == "cn_id" and not cn_id_ok(digits):
                continue
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            out.append((p.name, Span(start=s, end=e, text=value)))
    out.sort(key=lambda t: t[1].start)
    return out


def _alert(cfg: PolicyConfig, code: str, spans: list[Span], *, extra: dict[str, Any] | None = None,
           reason: str | None = None, masked: bool = False) -> Proposal:
    first = spans[0] if spans else None
    shown = [mask(s.text) if masked else s.text for s in spans]
    details: dict[str, Any] = {
        "code": code,
        "span": [first.start, first.end] if first else None,
        "match": shown[0] if shown else "",
        "spans": [{"start": s.start, "end": s.end, "text": t} for s, t in zip(spans, shown, strict=True)],
    }
    details.update(extra or {})
    label = _QA_REASON.get(code, code)
    return Proposal(
        type=ActionType.qa_alert, rule=f"qa.{code}", score=_SEVERITY.get(code, 0.5),
        script=cfg.script(f"qa_{code}", **{**details, "match": details["match"]}),
        reason=reason or (f"{label}：「{'」「'.join(shown)}」" if shown else label),
        evidence=tuple(f"{code}@{s.start}-{s.end}" for s in spans), details=details,
    )


def check_text(cfg: PolicyConfig, text: str, now: datetime) -> list[Proposal]:
    """Word-list and pattern checks of one agent message (no timing checks)."""
    folded = fold(text)
    now = aware(now, cfg.tz).astimezone(cfg.tz)
    out: list[Proposal] = []
    promises = find_promises(cfg.qa.promises, folded, now)
    absorbed = [(p.start, p.end) for p in promises]
    for code, pset in cfg.qa.checks.items():
        spans = [
            s for s in pset.spans(folded)
            if not (code == "forbidden_promise" and s.text in cfg.qa.promises.absorbs
                    and any(a <= s.start and s.end <= b for a, b in absorbed))
        ]
        if spans:
            out.append(_alert(cfg, code, [Span(start=s.start, end=s.end, text=text[s.start:s.end]) for s in spans]))
    personal = _personal_spans(cfg.qa.personal_data, folded)
    if personal:
        spans = [Span(start=s.start, end=s.end, text=text[s.start:s.end]) for _, s in personal]
        out.append(_alert(cfg, "personal_data", spans, masked=True,
                          extra={"kinds": [name for name, _ in personal]}))
    for p in promises:
        span = Span(start=p.start, end=p.end, text=text[p.start:p.end])
        out.append(_alert(cfg, "promise_tracked", [span], extra={
            "kind": p.kind, "verb": p.verb, "deadline": p.deadline, "due": p.due.isoformat(),
            "kept_by": list(p.kept_by)},
            reason=f"承诺「{span.text}」将于 {p.due:%m-%d %H:%M} 到期，已记录跟踪"))
    return out


def check_timing(cfg: PolicyConfig, state: ConversationState, ts: datetime) -> tuple[list[Proposal], bool]:
    """Response-time checks for an agent reply at ``ts``; also whether this reply was slow."""
    waited = response_seconds(state, aware(ts, cfg.tz))
    if waited is None:
        return [], False
    out: list[Proposal] = []
    slow = waited > cfg.qa.slow_response_seconds
    if state.first_response_s is None and waited > cfg.qa.first_response_seconds:
        out.append(_alert(cfg, "slow_first_response", [], extra={"seconds": round(waited, 1),
                                                                  "limit": cfg.qa.first_response_seconds},
                          reason=f"首次响应用时{waited:.0f}秒，超过{cfg.qa.first_response_seconds:g}秒"))
    elif state.first_response_s is not None and slow and state.slow_responses + 1 >= cfg.qa.slow_response_repeat:
        out.append(_alert(cfg, "slow_response", [], extra={"seconds": round(waited, 1), "count": state.slow_responses + 1,
                                                            "limit": cfg.qa.slow_response_seconds},
                          reason=f"第{state.slow_responses + 1}次回复超过{cfg.qa.slow_response_seconds:g}秒（本次{waited:.0f}秒）"))
    return out, slow


def overdue_promises(cfg: PolicyConfig, state: ConversationState, now: datetime) -> list[Proposal]:
    """``promise_overdue`` for every open promise whose due time has passed (each alerted once)."""
    now = aware(now, cfg.tz)
    out = []
    for p in state.open_promises:
        if p.status == "open" and aware(p.due, cfg.tz) < now:
            out.append(_alert(cfg, "promise_overdue", [], extra={
                "promise_id": p.id, "turn_id": p.turn_id, "due": p.due.isoformat(), "kind": p.kind,
                "match": p.text}, reason=f"承诺「{p.text}」已于 {aware(p.due, cfg.tz).astimezone(cfg.tz):%m-%d %H:%M} 到期仍未兑现"))
    return out
