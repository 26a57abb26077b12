"""One module per judgment of the policy; each exposes ``propose(facts, ...) -> list[Proposal]``.

- :mod:`.defect`      usage question or product defect (the judgment the others build on)
- :mod:`.escalation`  safety, threats, anger, repeated contact, defect after failed guidance
- :mod:`.recovery`    unshipped / delayed orders and defects, within the tier's allowance
- :mod:`.answer`      KB answer, order-status answer, clarify
- :mod:`.care`        anxiety, seasonal reminders, first-use tips, order-event notices
- :mod:`.cross_sell`  solve first, then suggest
"""

from __future__ import annotations
