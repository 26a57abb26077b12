"""Commitments with a deadline in an agent's message ("明天一定给您发货", "24小时内退款").

:func:`find_promises` splits the message into clauses and reports each clause that has a deadline
phrase and a commitment verb and no hedge (预计, 一般, 如果, 您可以 ...): those are commitments
of the shop, tracked as open promises until an event keeps them (shipped, refunded, resolve) or
their due time passes (``promise_overdue``). All phrases come from ``qa.promises`` in the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from assist.policy.config import Deadline, PromisesCfg, compile_pattern

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def parse_count(text: str) -> int | None:
    """'24' / '二十四' / '两' / '十二' -> int; None when it is not a number we read."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if not text or any(c not in _CN_DIGITS and c != "十" for c in text):
        return None
    if "十" not in text:
        return _CN_DIGITS[text] if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    t = _CN_DIGITS.get(tens, 0) if tens else 1
    o = _CN_DIGITS.get(ones, 0) if ones else 0
    return t * 10 + o


def _end_of_day(d: datetime) -> datetime:
    return datetime.combine(d.date(), time(23, 59, 59), tzinfo=d.tzinfo)


def due_time(deadline: Deadline, match: re.Match[str], now: datetime) -> datetime | None:
    """When a deadline phrase falls due, from ``now`` (an aware datetime in the shop's zone)."""
    n = parse_count(match.group(1)) if match.groups() and match.group(1) else None
    if deadline.due == "end_of_day":
        return _end_of_day(now + timedelta(days=deadline.days))
    if deadline.due == "end_of_week":
        return _end_of_day(now + timedelta(days=6 - now.weekday()))
    if n is None:
        return None
    if deadline.due == "hours":
        return now + timedelta(hours=n)
    if deadline.due == "minutes":
        return now + timedelta(minutes=n)
    if deadline.due == "days":
        return _end_of_day(now + timedelta(days=n))
    # workdays: skip Saturdays and Sundays (public holidays are not known here)
    d = now
    left = n
    while left > 0:
        d += timedelta(days=1)
        if d.weekday() < 5:
            left -= 1
    return _end_of_day(d)


@dataclass(frozen=True)
class FoundPromise:
    start: int
    end: int
    text: str
    kind: str
    verb: str
    deadline: str
    due: datetime
    kept_by: tuple[str, ...]


def _clauses(text: str, split: str) -> list[tuple[int, int]]:
    out = []
    start = 0
    for m in compile_pattern(split).finditer(text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(text)))
    return [(s, e) for s, e in out if text[s:e].strip()]


def find_promises(cfg: PromisesCfg, text: str, now: datetime) -> list[FoundPromise]:
    """Every deadline commitment in ``text`` (folded agent text), with its due time."""
    found: list[FoundPromise] = []
    for s, e in _clauses(text, cfg.clause_split):
        clause = text[s:e]
        if any(h in clause for h in cfg.hedges):
            continue
        verb_kind = next(((k, m.group(0)) for k, kind in cfg.kinds.items() for v in kind.verbs
                          if (m := compile_pattern(v).search(clause))), None)
        if verb_kind is None:
            continue
        for d in cfg.deadlines:
            m = compile_pattern(d.pattern).search(clause)
            if m is None:
                continue
            due = due_time(d, m, now)
            if due is None:
                continue
            lead = len(clause) - len(clause.lstrip())
            trail = len(clause.rstrip())
            kind, verb = verb_kind
            found.append(FoundPromise(s + lead, s + trail, clause.strip(), kind, verb, m.group(0), due,
                                      tuple(cfg.kinds[kind].kept_by)))
            break
    return found
