"""Deterministic ranking of proposals into :class:`Action` values with stable ids.

Order: ``rank.priority[type]`` (or ``rank.rule_priority[rule]``) ``+ score`` descending (type priorities are far apart, so the score
only orders actions of one type), then the type's position in :class:`ActionType`, then rule, KB
id and SKU — so equal scores never depend on dict or set order. Ids are
``"<prefix>:<type>:<n>"`` with ``n`` counting actions of that type from 1 in ranked order: the
same inputs always give the same ids. ``rank.max_actions`` caps the list; QA alerts are never cut
(each is a separate finding the agent must see). ``Action.score`` is the rule's own score (0..1);
the list order is the ranking.
"""

from __future__ import annotations

from collections.abc import Iterable

from assist.policy.actions import Action, ActionType, Proposal
from assist.policy.config import RankCfg

_TYPE_ORDER = {t: i for i, t in enumerate(ActionType)}


def rank(proposals: Iterable[Proposal], prefix: str, cfg: RankCfg) -> list[Action]:
    """Rank ``proposals`` and give each an id under ``prefix`` (a turn id, or an event id)."""
    def total(p: Proposal) -> float:
        return cfg.priority_of(p.type.value, p.rule) + p.score

    ordered = sorted(proposals, key=lambda p: (-round(total(p), 6), _TYPE_ORDER[p.type], p.rule,
                                               p.kb_id or "", p.sku or "", p.script))
    kept: list[Proposal] = []
    others = 0
    for p in ordered:
        if p.type is ActionType.qa_alert:
            kept.append(p)
        elif others < cfg.max_actions:
            kept.append(p)
            others += 1
    counts: dict[ActionType, int] = {}
    out: list[Action] = []
    for p in kept:
        counts[p.type] = counts.get(p.type, 0) + 1
        out.append(p.to_action(f"{prefix}:{p.type.value}:{counts[p.type]}", p.score))
    return out
