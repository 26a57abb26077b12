"""A client that does not read cannot make the server buffer without bound (WsSession unit test).

A real socket would need megabytes of frames before TCP backpressure reaches the writer, so the
stuck client is a stand-in WebSocket whose ``send_text`` never returns; everything else is the
real session.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from starlette.websockets import WebSocketState

from assist.service.conversations import StoredFrame
from assist.service.deps import AppServices
from assist.service.errors import WS_CLOSE_TRY_AGAIN
from assist.service.frames import SessionPhase
from assist.service.ws import WsSession
from assist.settings import Settings


class StuckWebSocket:
    """Accepts and never finishes sending: the peer's receive window is full."""

    def __init__(self) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.headers: dict[str, str] = {}
        self.closed: tuple[int, str | None] | None = None
        self.sending = 0

    async def send_text(self, text: str) -> None:
        self.sending += 1
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)
        self.application_state = WebSocketState.DISCONNECTED


async def test_full_send_queue_closes_with_1013_and_stops_buffering() -> None:
    services = AppServices(settings=Settings(env="test", ws_send_queue=4, ws_send_stall_s=0.05))
    stuck = StuckWebSocket()
    session = WsSession(stuck, services)  # type: ignore[arg-type]
    session.phase, session.conversation_id = SessionPhase.open, "c"
    session._writer = asyncio.create_task(session._write_loop())
    await asyncio.sleep(0)
    for seq in range(1, 7):  # 1 in the stuck send + 4 queued + 1 over the limit
        session.deliver(StoredFrame(seq, f'{{"seq":{seq}}}'))
        await asyncio.sleep(0)
    # Over the limit, but the send has not been stuck for the stall time yet: not closed.
    assert session._closing is None and session.phase is SessionPhase.open
    await asyncio.sleep(0.1)
    session.deliver(StoredFrame(7, '{"seq":7}'))
    assert session._closing is not None
    await session._closing
    assert stuck.closed == (WS_CLOSE_TRY_AGAIN, "ws.slow_consumer")
    assert session.phase is SessionPhase.closed
    assert services.metrics.value("assist_ws_slow_consumer_closed_total") == 1
    session.deliver(StoredFrame(99, "{}"))  # ignored after close: nothing grows any more
    assert session._queue.qsize() <= 6
    assert session._writer.done()


async def test_a_reading_client_that_is_slower_than_its_frames_is_closed_at_the_hard_cap() -> None:
    """Sends complete (the client reads), but frames come faster: memory stays bounded anyway."""
    services = AppServices(settings=Settings(env="test", ws_send_queue=2))
    slow = StuckWebSocket()
    session = WsSession(slow, services)  # type: ignore[arg-type]
    session.phase, session.conversation_id = SessionPhase.open, "c"
    for seq in range(1, 10):  # the writer never ran: nothing is stalled, the queue passes 4 x 2
        session.deliver(StoredFrame(seq, "{}"))
    assert session._closing is not None
    await session._closing
    assert slow.closed == (WS_CLOSE_TRY_AGAIN, "ws.slow_consumer")


async def test_resume_waits_for_room_instead_of_dropping() -> None:
    """Replay uses backpressure (the client asked for it); only live frames may overflow."""
    services = AppServices(settings=Settings(env="test", ws_send_queue=2))
    sent: list[str] = []

    class Store:
        async def frames_after(self, cid: str, last: int, *, limit: int) -> list[StoredFrame]:
            return [StoredFrame(s, f'{{"seq":{s}}}') for s in range(last + 1, min(last + limit, 20) + 1)]

    session = WsSession(StuckWebSocket(), services)  # type: ignore[arg-type]
    session.tenant = SimpleNamespace(conversations=Store())  # type: ignore[assignment]
    session.phase, session.conversation_id = SessionPhase.open, "c"
    session._writer = asyncio.create_task(session._write_loop())
    done = asyncio.Event()

    async def send_text(text: str) -> None:
        sent.append(text)
        if len(sent) == 20:
            done.set()

    session.ws.send_text = send_text  # type: ignore[method-assign]
    await session._on_resume(0)
    await asyncio.wait_for(done.wait(), 5)
    assert [int(t.split(":")[1].rstrip("}")) for t in sent] == list(range(1, 21))
    assert session.phase is SessionPhase.open
    session._writer.cancel()
