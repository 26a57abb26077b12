"""REST routers, one per resource (conversations, analyze, kb, crm, health); combined in ``app.py``."""

from __future__ import annotations
