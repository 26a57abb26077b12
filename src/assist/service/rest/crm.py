"""CRM hooks: customer profile upserts and order / logistics events, pushed to the agents' consoles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from assist import limits
from assist.limits import Id, Label, Note, Timestamp
from assist.service.deps import ConversationsDep
from assist.service.frames import EventFrame
from assist.state import CustomerProfile, Order, OrderEvent, OrderEventType

router = APIRouter(prefix="/v1", tags=["crm"])


class CustomerIn(BaseModel):
    """A whole profile as the CRM knows it (the id is the path's)."""

    tier: Label = "normal"
    opt_out_marketing: bool = False
    orders: list[Order] = Field(default_factory=list, max_length=limits.ORDERS_MAX)
    region: Label | None = None


class CustomerOut(BaseModel):
    customer: CustomerProfile
    conversations: list[str] = Field(description="the customer's conversations the profile was applied to")


class OrderEventIn(BaseModel):
    customer_id: Id
    order_id: limits.text(limits.ID_MAX, min_length=1)
    type: OrderEventType
    ts: Timestamp
    sku: Label | None = None
    detail: Note | None = None


class OrderEventOut(BaseModel):
    customer_id: str
    events: list[EventFrame] = Field(description="the event frame pushed to each of the customer's conversations")


@router.put("/customers/{customer_id}", response_model=CustomerOut, tags=["crm"])
async def put_customer(customer_id: Id, body: CustomerIn, conversations: ConversationsDep) -> dict[str, Any]:
    """Create or replace a customer profile; conversations of that customer get a ``profile.updated`` event."""
    profile = CustomerProfile(id=customer_id, **body.model_dump())
    ids = await conversations.upsert_profile(profile)
    return {"customer": profile, "conversations": ids}


@router.post("/orders/events", response_model=OrderEventOut)
async def post_order_event(body: OrderEventIn, conversations: ConversationsDep) -> dict[str, Any]:
    """An order / logistics event: the engine reacts (care, recovery ...) in each conversation of the
    customer, and the ``order.<type>`` event frame is pushed to the consoles watching them."""
    event = OrderEvent(**body.model_dump(exclude={"customer_id"}))
    frames = await conversations.order_event(body.customer_id, event)
    return {"customer_id": body.customer_id, "events": frames}
