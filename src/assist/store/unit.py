"""One transaction's worth of repositories, all bound to the same session."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from assist.store.conversations import ConversationRepo
from assist.store.customers import CustomerRepo
from assist.store.kb import KbRepo
from assist.store.outbox import OutboxRepo
from assist.store.quality import QualityRepo
from assist.store.replays import ReplayRepo


@dataclass
class UnitOfWork:
    """The repositories of one transaction; obtained from ``Database.transaction()``.

    Everything done through one unit commits together when the ``async with`` block ends
    without an exception, and nothing does otherwise: e.g. a processed turn, its frames and
    its outbox events.
    """

    session: AsyncSession
    conversations: ConversationRepo = field(init=False)
    customers: CustomerRepo = field(init=False)
    kb: KbRepo = field(init=False)
    outbox: OutboxRepo = field(init=False)
    replays: ReplayRepo = field(init=False)
    quality: QualityRepo = field(init=False)

    def __post_init__(self) -> None:
        self.conversations = ConversationRepo(self.session)
        self.customers = CustomerRepo(self.session)
        self.kb = KbRepo(self.session)
        self.outbox = OutboxRepo(self.session)
        self.replays = ReplayRepo(self.session)
        self.quality = QualityRepo(self.session)
