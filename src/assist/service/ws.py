"""The WebSocket endpoint ``/v1/ws``: protocol v1 sessions (see :mod:`assist.service.frames`).

One :class:`WsSession` per connection. It owns

- the session phase (:class:`~assist.service.frames.SessionPhase`): only ``hello`` and ``ping`` are
  allowed before the conversation is open; every other frame then gets ``ws.state``;
- a bounded send queue drained by one writer task. A client has stopped reading when one frame's
  send has not completed for ``ASSIST_WS_SEND_STALL_S`` (the socket's buffers are full). Such a
  client is closed with 1013 ("try again later") once its queue is over ``ASSIST_WS_SEND_QUEUE``
  instead of buffering without bound; so is one whose queue grows past four times that while it
  reads, too slowly. A client that pipelines requests (300 pings) is not closed: while its queue is
  full the session stops reading its frames, so it is slowed to the pace at which it reads the
  answers. Nothing is lost: every conversation frame is stored and the client comes back with
  ``resume``;
- the replay cursor: the highest ``seq`` queued, so live frames and a ``resume`` replay interleave
  without gaps or duplicates.

A ``draft`` (the agent's unsent text) is checked by the policy's agent-text check and answered
with a ``qa`` frame on this connection only: nothing is stored and no ``seq`` is used.

Bad input (malformed JSON, unknown types, missing fields, oversized text, frames out of phase,
unknown conversations) is answered with an ``error`` frame and the connection stays usable.
The conversation logic (ordering, idempotency, persistence) lives in
:class:`~assist.service.conversations.ConversationService`; this module only speaks the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from assist.errors import AssistError, ConversationMismatch, NotReadyError, StateError
from assist.policy.quality import check_text
from assist.service.auth import Authenticator, Principal, bearer_token, check_origin, client_address
from assist.service.conversations import ConversationService, StoredFrame
from assist.service.deps import AppServices
from assist.service.errors import (
    WS_CLOSE_POLICY,
    WS_CLOSE_TRY_AGAIN,
    Forbidden,
    OriginRefused,
    SlowConsumer,
    TooManyConnections,
    TooManyRequests,
    Unauthorized,
    error_frame_fields,
    internal_error,
)
from assist.service.frames import (
    AckFrame,
    DraftFrame,
    ErrorFrame,
    FeedbackFrame,
    HelloFrame,
    PingFrame,
    PongFrame,
    QaFlag,
    QaFrame,
    ResolveFrame,
    ResumeFrame,
    SessionPhase,
    TurnFrame,
    dump_frame,
    parse_client_frame,
)
from assist.service.tenants import TenantServices
from assist.store.records import Scope

_log = logging.getLogger(__name__)

router = APIRouter()

# Frames fetched per store round trip while replaying a resume.
_REPLAY_PAGE = 200
# A queue this many times its limit closes even a client that still reads: memory stays bounded
# when frames come faster than a console reads them, whatever the cause.
_HARD_FACTOR = 4


def check_draft(engine: Any, text: str, now: datetime) -> list[QaFlag]:
    """The QA flags of an unsent agent text, most serious first.

    The word-list and pattern part of ``Policy.check_agent_turn`` (the same ``qa_alert``
    proposals a sent turn gets, spans included), without the response-time and promise-deadline
    checks: those judge a message when it is sent, and a draft has not been.
    """
    proposals = sorted(check_text(engine.policy.config, text, now), key=lambda p: -p.score) if text else []
    return [QaFlag(code=p.details["code"], reason=p.reason, hint=p.script, spans=p.details["spans"])
            for p in proposals]


class WsSession:
    """One connected console. Receives frames, answers them, and is a sink for conversation frames."""

    def __init__(self, ws: WebSocket, services: AppServices) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.phase = SessionPhase.awaiting_hello
        self.conversation_id: str | None = None
        self.principal: Principal | None = None  # from the handshake's Authorization header or hello
        self.tenant: TenantServices | None = None
        self._slot_key: str | None = None  # the key whose connection slot this session holds
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._limit = max(1, self.settings.ws_send_queue)
        self._room = asyncio.Event()
        self._room.set()
        self._send_started: float | None = None  # when the writer's current send began; None: idle
        self._cursor = 0  # highest seq queued to this client
        self._replaying = False
        self._pending: list[StoredFrame] = []  # live frames that arrived during a replay
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    # --- sink side (called by ConversationService, on the event loop, without awaiting) ------

    def deliver(self, frame: StoredFrame) -> None:
        """Queue a live conversation frame unless the client already has it."""
        if self.phase is SessionPhase.closed:
            return
        if self._replaying:
            self._pending.append(frame)
            return
        if frame.seq <= self._cursor:
            return
        self._cursor = frame.seq
        self._enqueue(frame.text)

    def _enqueue(self, text: str) -> None:
        self._queue.put_nowait(text)
        n = self._queue.qsize()
        if n >= self._limit:
            self._room.clear()
        if n > self._limit and (self._stalled() or n > self._limit * _HARD_FACTOR):
            self._overflow()

    def _stalled(self) -> bool:
        """The client stopped reading: the frame being sent has been stuck for the stall time."""
        started = self._send_started
        return started is not None and time.monotonic() - started > self.settings.ws_send_stall_s

    async def _wait_for_room(self) -> None:
        """Wait until the send queue is below its limit; close the client if it stopped reading."""
        while self._queue.qsize() >= self._limit and self.phase is not SessionPhase.closed:
            try:
                await asyncio.wait_for(self._room.wait(), timeout=self.settings.ws_send_stall_s)
            except TimeoutError:
                if self._stalled():
                    self._overflow()
                    return

    def _overflow(self) -> None:
        # The client is not reading. Buffering more would let one slow console grow the server's
        # memory without bound; its frames are in the store, so it can resume after reconnecting.
        if self.phase is SessionPhase.closed:
            return
        _log.info("closing slow WebSocket client of %s: %d frames queued, not reading",
                  self.conversation_id, self._queue.qsize())
        self.services.metrics.ws_slow_closed.inc()
        self._close_soon(WS_CLOSE_TRY_AGAIN, SlowConsumer.code)

    def _close_soon(self, code: int, reason: str) -> None:
        self._leave()
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        if self.ws.application_state is WebSocketState.CONNECTED:
            # A client that does not read may not read the close frame either; don't wait forever.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(code=code, reason=reason), timeout=2.0)

    def _leave(self) -> None:
        if self.phase is not SessionPhase.closed:
            self.phase = SessionPhase.closed
            if self.conversation_id is not None and self.tenant is not None:
                self.tenant.conversations.unsubscribe(self.conversation_id, self)

    # --- connection lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            check_origin(self.ws.headers.get("origin"), self.ws.headers.get("host"), self.settings)
        except OriginRefused as exc:
            # Refused before the upgrade: the browser gets HTTP 403 and the page cannot talk to us.
            self.services.metrics.errors.labels(code=exc.code).inc()
            _log.info("refused WebSocket from origin %r", self.ws.headers.get("origin"))
            await self.ws.close(code=WS_CLOSE_POLICY, reason=exc.code)
            return
        auth = self.services.auth
        full = auth.connections.connect() if auth is not None else None
        await self.ws.accept()
        self.services.metrics.ws_connections.inc()
        self._writer = asyncio.create_task(self._write_loop(), name="ws-writer")
        try:
            if full is not None:
                await self._refuse(TooManyConnections(full, retry_after_s=5.0), WS_CLOSE_TRY_AGAIN)
            elif await self._authenticate_handshake():
                await self._read_loop()
        finally:
            self.services.metrics.ws_connections.dec()
            if auth is not None:
                if full is None:
                    auth.connections.disconnect()
                if self._slot_key is not None:
                    auth.connections.unbind(self._slot_key)
            self._leave()
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    await self._closing
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._writer

    async def _write_loop(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if self._queue.qsize() < self._limit:
                    self._room.set()
                self._send_started = time.monotonic()
                await self.ws.send_text(text)
                self._send_started = None
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The peer went away; the reader sees the disconnect and ends the session.
            return

    async def _read_loop(self) -> None:
        while self.phase is not SessionPhase.closed:
            # Backpressure: a client's requests are read only as fast as it reads the answers.
            await self._wait_for_room()
            if self.phase is SessionPhase.closed:
                return
            try:
                msg = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if msg["type"] == "websocket.disconnect":
                return
            raw = msg.get("text")
            if raw is None:
                raw = msg.get("bytes") or b""
            await self._handle_raw(raw)

    # --- frames ----------------------------------------------------------------------------------

    async def _handle_raw(self, raw: str | bytes) -> None:
        ref: str | None = None
        turn_id: str | None = None
        try:
            frame = parse_client_frame(raw, max_text_chars=self.settings.max_text_chars,
                                       max_frame_bytes=self.settings.ws_max_frame_bytes)
            ref = frame.type
            turn_id = getattr(frame, "turn_id", None)
            named = getattr(frame, "conversation_id", None)
            if (not isinstance(frame, HelloFrame) and named is not None and self.conversation_id is not None
                    and named != self.conversation_id):
                raise ConversationMismatch(f"{frame.type} names conversation {named!r} but this connection is "
                                           f"open on {self.conversation_id!r}; open another connection for it")
            if isinstance(frame, PingFrame):
                self._send_now(PongFrame(conversation_id=self.conversation_id, nonce=frame.nonce,
                                         server_time=datetime.now(UTC)))
            elif isinstance(frame, HelloFrame):
                await self._on_hello(frame)
            elif self.phase is not SessionPhase.open:
                raise StateError(f"'{frame.type}' before 'hello': send hello with a conversation_id first")
            elif isinstance(frame, TurnFrame):
                self._on_turn(frame)
            elif isinstance(frame, FeedbackFrame | ResolveFrame):
                self._on_command(frame)
            elif isinstance(frame, ResumeFrame):
                await self._on_resume(frame.last_seq)
            elif isinstance(frame, DraftFrame):
                await self._on_draft(frame)
        except AssistError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            self._send_error(exc, ref or details.get("ref"), turn_id or details.get("turn_id"))
        except Exception as exc:
            self._send_error(internal_error(f"ws frame {ref} of {self.conversation_id}", exc), ref, turn_id)

    def _send_now(self, frame: AckFrame | ErrorFrame | PongFrame | QaFrame) -> None:
        """Queue a connection-only frame (``seq`` null): answers, not conversation history."""
        if self.phase is not SessionPhase.closed:
            self._enqueue(dump_frame(frame))

    def _send_error(self, exc: AssistError, ref: str | None, turn_id: str | None) -> None:
        self.services.metrics.errors.labels(code=exc.code).inc()
        self._send_now(ErrorFrame(conversation_id=self.conversation_id, ref=ref, turn_id=turn_id,
                                  **error_frame_fields(exc)))

    async def _refuse(self, exc: AssistError, close_code: int) -> None:
        """An error frame saying why, then close (reason: the code): the connection cannot be used."""
        self.services.metrics.errors.labels(code=exc.code).inc()
        self._leave()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.send_text(dump_frame(ErrorFrame(**error_frame_fields(exc)))), 2.0)
        await self._close(close_code, exc.code)

    def _auth(self) -> Authenticator:
        if self.services.auth is None:
            raise NotReadyError(f"service is not ready ({self.services.stage}); retry shortly")
        return self.services.auth

    async def _authenticate_handshake(self) -> bool:
        """Authenticate a key sent in the handshake's Authorization header; False if the session ends.

        Without a header the key may come in ``hello`` instead. A header that does not authenticate
        ends the connection: the client has to reconnect with another one anyway.
        """
        token = bearer_token(self.ws.headers.get("authorization"))
        if token is None:
            return True
        try:
            await self._login(token)
        except (Unauthorized, Forbidden, TooManyRequests) as exc:
            close = WS_CLOSE_TRY_AGAIN if isinstance(exc, TooManyRequests) else WS_CLOSE_POLICY
            await self._refuse(exc, close)
            return False
        except AssistError as exc:  # not ready yet: say so; the client retries
            await self._refuse(exc, WS_CLOSE_TRY_AGAIN)
            return False
        return True

    async def _login(self, token: str | None) -> Principal:
        """Authenticate, check the console scope and take the key's connection slot."""
        auth = self._auth()
        principal = await auth.authenticate(token, client_address(self.ws.scope))
        if not principal.allows(Scope.console):
            raise Forbidden(f"the WebSocket needs scope 'console' (or admin); the key has {principal.scope.value!r}")
        if principal.limit_key is not None and self._slot_key != principal.limit_key:
            full = auth.connections.bind(principal.limit_key)
            if full is not None:
                raise TooManyConnections(full, retry_after_s=5.0)
            if self._slot_key is not None:
                auth.connections.unbind(self._slot_key)
            self._slot_key = principal.limit_key
        self.principal = principal
        return principal

    async def _on_hello(self, frame: HelloFrame) -> None:
        if self.phase is SessionPhase.open:
            raise StateError(f"this connection is already open on conversation {self.conversation_id!r}; "
                             "open another connection for another conversation")
        principal = self.principal or await self._login(frame.token)
        if self.services.tenants is None or not self.services.ready:
            raise NotReadyError(f"service is not ready ({self.services.stage}); retry hello shortly")
        self.tenant = await self.services.tenants.get(principal.tenant)
        service = self.tenant.conversations
        last_seq = await service.open(frame.conversation_id, customer=frame.customer, create=frame.create,
                                      sink=self)
        if self.phase is SessionPhase.closed:  # the client left while we were opening
            service.unsubscribe(frame.conversation_id, self)
            return
        self.conversation_id = frame.conversation_id
        self.phase = SessionPhase.open
        self._cursor = last_seq
        self._send_now(AckFrame(conversation_id=frame.conversation_id, ref="hello", last_seq=last_seq))

    def _service(self) -> ConversationService:
        if self.tenant is None:  # pragma: no cover - hello already checked
            raise NotReadyError("service is not ready")
        return self.tenant.conversations

    def _on_turn(self, frame: TurnFrame) -> None:
        service = self._service()
        cid = self.conversation_id
        assert cid is not None and self.principal is not None
        # Before the turn is stored: a refused turn was never acked, so the client resends it later.
        self._auth().meter_turn(self.principal)

        async def run() -> None:
            try:
                result = await service.submit_turn(cid, frame)
            except AssistError as exc:
                self._send_error(exc, "turn", frame.turn_id)
                return
            except Exception as exc:
                self._send_error(internal_error(f"turn {frame.turn_id} of {cid}", exc), "turn", frame.turn_id)
                return
            if result.duplicate:
                # Not reprocessed: say so, then hand back the stored result (its original seq).
                self._send_now(AckFrame(conversation_id=cid, ref="turn", turn_id=frame.turn_id, duplicate=True))
                if result.analysis_text is not None:
                    self._enqueue(result.analysis_text)

        # Spawned, so the reader keeps answering pings while the turn is analysed; the service
        # takes the conversation's lock in spawn order, which keeps turns in the order received.
        service.spawn(run())

    def _on_command(self, frame: FeedbackFrame | ResolveFrame) -> None:
        service = self._service()
        cid = self.conversation_id
        assert cid is not None

        async def run() -> None:
            try:
                if isinstance(frame, FeedbackFrame):
                    await service.feedback(cid, suggestion_id=frame.suggestion_id, outcome=frame.outcome,
                                           edited_text=frame.edited_text)
                else:
                    await service.resolve(cid, ts=frame.ts)
            except AssistError as exc:
                self._send_error(exc, frame.type, None)
            except Exception as exc:
                self._send_error(internal_error(f"{frame.type} of {cid}", exc), frame.type, None)

        service.spawn(run())

    async def _on_draft(self, frame: DraftFrame) -> None:
        # Awaited in the reader, so the answers leave in the order the drafts came; the check is
        # regexes over at most max_text_chars, run on the CPU pool like the engine.
        engine = self._service().engine
        loop = asyncio.get_running_loop()
        flags = await loop.run_in_executor(self.services.cpu, check_draft, engine, frame.text, datetime.now(UTC))
        self._send_now(QaFrame(conversation_id=self.conversation_id, draft_id=frame.draft_id, flags=flags))

    async def _on_resume(self, last_seq: int) -> None:
        """Replay every stored frame after ``last_seq``, then continue live without a gap."""
        service = self._service()
        cid = self.conversation_id
        assert cid is not None
        self._replaying = True
        try:
            self._cursor = last_seq
            while self.phase is not SessionPhase.closed:
                page = await service.frames_after(cid, self._cursor, limit=_REPLAY_PAGE)
                if not page:
                    break
                for frame in page:
                    # Waiting for room: the client asked for this history, and the replay is
                    # bounded by what is stored, so backpressure is the right answer.
                    await self._wait_for_room()
                    if self.phase is SessionPhase.closed:
                        return
                    self._queue.put_nowait(frame.text)
                    self._cursor = frame.seq
            # Frames published while the last page was being read are either in that page or
            # here; none can fall in between, because frames are stored before they are published.
            for frame in sorted(self._pending, key=lambda f: f.seq):
                if frame.seq > self._cursor:
                    self._cursor = frame.seq
                    self._enqueue(frame.text)
        finally:
            self._pending.clear()
            self._replaying = False


@router.websocket("/v1/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    """Protocol v1 (DESIGN §4): hello, turn, feedback, resolve, resume, draft, ping."""
    services: AppServices = ws.app.state.services
    await WsSession(ws, services).run()
