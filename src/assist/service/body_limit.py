"""A cap on the size of HTTP request bodies: 413 ``request.too_large`` instead of reading without bound.

Plain ASGI middleware, because it must act before any router reads the body. A declared
``Content-Length`` over the cap is refused before a byte is read; a chunked body is counted as
it streams and refused as soon as it passes the cap. Either way the client gets a JSON error
and the keep-alive connection stays usable (the answer is an ordinary response, not a crash).

Routes that take bigger uploads (replay logs) are listed with their own cap; they still stream
and enforce it themselves, the middleware only stops bodies beyond that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assist.errors import BodyTooLargeError
from assist.service.errors import error_body, http_status


class _TooLarge(HTTPException):
    # An HTTPException so that it passes FastAPI's body parsing (which turns any other error
    # while reading into a 400) and reaches the one error table as a 413.
    def __init__(self, cap: int) -> None:
        super().__init__(413, f"request body larger than {cap} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (or over the cap of the longest matching path prefix)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, prefixes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))

    def cap(self, path: str) -> int:
        for prefix, cap in self.prefixes:
            if path.startswith(prefix):
                return cap
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _refuse(send, cap)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _TooLarge(cap)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, cap: int) -> None:
    exc = BodyTooLargeError(f"request body larger than {cap} bytes")
    body = json.dumps(error_body(exc)).encode()
    await send({"type": "http.response.start", "status": http_status(exc),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
