"""One transaction's worth of repositories, all bound to the same session."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from assist.store.conversations import ConversationRepo
from assist.store.customers import CustomerRepo
from assist.store.kb import KbRepo
from assist.store.keys import KeyRepo, TenantRepo
from assist.store.models import DEFAULT_TENANT
from assist.store.outbox import OutboxRepo
from assist.store.quality import QualityRepo
from assist.store.replays import ReplayRepo


@dataclass
class UnitOfWork:
    """The repositories of one transaction for one tenant; obtained from ``Database.transaction(tenant)``.

    The tenant-owned repositories (conversations, customers, kb, outbox, replays) only see and
    write that tenant's rows; ``keys`` and ``tenants`` are the registry and span all tenants.

    Everything done through one unit commits together when the ``async with`` block ends
    without an exception, and nothing does otherwise: e.g. a processed turn, its frames and
    its outbox events.
    """

    session: AsyncSession
    tenant: str = DEFAULT_TENANT
    conversations: ConversationRepo = field(init=False)
    customers: CustomerRepo = field(init=False)
    kb: KbRepo = field(init=False)
    outbox: OutboxRepo = field(init=False)
    replays: ReplayRepo = field(init=False)
    quality: QualityRepo = field(init=False)
    keys: KeyRepo = field(init=False)
    tenants: TenantRepo = field(init=False)

    def __post_init__(self) -> None:
        self.conversations = ConversationRepo(self.session, self.tenant)
        self.customers = CustomerRepo(self.session, self.tenant)
        self.kb = KbRepo(self.session, self.tenant)
        self.outbox = OutboxRepo(self.session, self.tenant)
        self.replays = ReplayRepo(self.session, self.tenant)
        self.quality = QualityRepo(self.session, self.tenant)
        self.keys = KeyRepo(self.session)
        self.tenants = TenantRepo(self.session)
