"""The policy: data-driven, deterministic next-best actions (DESIGN §1) and agent checks (§5).

Build one per shop::

    policy = Policy(shop, load_policy_config(settings.rules_dir, shop.policy))
    actions = policy.decide(state, analysis, now)          # after state.on_customer_turn
    alerts = policy.check_agent_turn(state, text, now)     # qa_alert actions

Prefer :class:`assist.engine.Engine`, which folds turns into the state and calls the policy in the
right order. The rules themselves are ``assist.policy.rules.*``; their choices are in
``assist/data/policy.yaml`` and a shop's ``policy.yaml``.
"""

from __future__ import annotations

from assist.policy.actions import Action, ActionType, Proposal
from assist.policy.config import PolicyConfig, load_policy_config, merge_policy
from assist.policy.decide import Policy

__all__ = [
    "Action",
    "ActionType",
    "Policy",
    "PolicyConfig",
    "Proposal",
    "load_policy_config",
    "merge_policy",
]
