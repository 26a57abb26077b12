"""The one place that turns errors into HTTP responses and WebSocket ``error`` frames.

Stages, stores and the engine raise :class:`assist.errors.AssistError` subclasses and know nothing
about transports. :data:`ERROR_TABLE` maps every class to an HTTP status; the JSON body and the
WebSocket frame carry the same stable ``code``::

    HTTP   422 {"code": "turn.text_too_long", "message": "..."}
    WS     {"type": "error", "v": 1, "seq": null, "code": "turn.text_too_long", "message": "...", ...}

A contract test (tests/service/test_errors.py) fails when an ``AssistError`` subclass is missing
here. Unexpected exceptions are logged once, with context, and answered with the generic
``internal`` code so no stack trace or library message leaks to a client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from assist import errors as e

_log = logging.getLogger(__name__)


class Unauthorized(e.AssistError):
    """Authentication failed (REST ``Authorization`` header or the ``hello`` frame's ``token``).

    Lives here rather than in :mod:`assist.errors` because only the service layer authenticates;
    it is an ``AssistError`` like the others so the table below maps it the same way. The tree::

        Unauthorized        "auth.unauthorized"  401
        ├── AuthMissing     "auth.missing"       401  no key presented
        └── AuthInvalid     "auth.invalid"       401  unknown, malformed or revoked key
        Forbidden           "auth.forbidden"     403  the key's scope does not cover the endpoint
        UnknownTenant       "auth.unknown_tenant" 403 the key's tenant is not registered
        OriginRefused       "ws.origin_refused"  403  WebSocket handshake from an origin not allowed
        TooManyRequests     "rate.limited"       429  (+ Retry-After)
        ├── AuthLocked      "auth.locked"        429  too many failed authentications from one address
        └── TooManyConnections "ws.too_many_connections" 429  per-key or total WebSocket limit
    """

    code = "auth.unauthorized"


class AuthMissing(Unauthorized):
    code = "auth.missing"


class AuthInvalid(Unauthorized):
    code = "auth.invalid"


class Forbidden(e.AssistError):
    code = "auth.forbidden"


class UnknownTenant(Forbidden):
    code = "auth.unknown_tenant"


class OriginRefused(Forbidden):
    code = "ws.origin_refused"


class TooManyRequests(e.AssistError):
    """A limit tied to a key or a client address; ``retry_after_s`` becomes the ``Retry-After`` header."""

    code = "rate.limited"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, details={"retry_after_s": round(retry_after_s, 3)})
        self.retry_after_s = retry_after_s


class AuthLocked(TooManyRequests):
    code = "auth.locked"


class TooManyConnections(TooManyRequests):
    code = "ws.too_many_connections"


class SlowConsumer(e.AssistError):
    """A WebSocket client does not read its frames fast enough; the bounded send queue is full.

    Never sent as a frame (the client is not reading): the connection is closed with
    :data:`WS_CLOSE_TRY_AGAIN` and the reason carries this code. Frames are stored, so the
    client reconnects and sends ``resume``.
    """

    code = "ws.slow_consumer"


# WebSocket close codes (RFC 6455 §7.4.1).
WS_CLOSE_NORMAL = 1000
WS_CLOSE_GOING_AWAY = 1001
WS_CLOSE_TRY_AGAIN = 1013  # "Try Again Later": used for slow consumers and shutdown
WS_CLOSE_INTERNAL = 1011
WS_CLOSE_POLICY = 1008  # "Policy Violation": refused origin, failed authentication

# Every AssistError class -> HTTP status. Exact classes, not just the roots, so that adding a class
# to assist.errors without deciding its status here fails the contract test instead of silently
# inheriting a maybe-wrong status.
ERROR_TABLE: dict[type[e.AssistError], int] = {
    e.AssistError: 500,
    e.ValidationError: 422,
    e.DataFileError: 422,
    e.BadFrameError: 400,
    e.UnknownFrameError: 400,
    e.TextTooLongError: 422,
    e.FieldTooLongError: 422,
    e.BodyTooLargeError: 413,
    e.FrameTooLargeError: 413,
    e.ConversationMismatch: 400,
    e.ReplayInputError: 422,
    e.NotFoundError: 404,
    e.KbEntryNotFound: 404,
    e.ConversationNotFound: 404,
    e.SuggestionNotFound: 404,
    e.ReplayNotFound: 404,
    e.ConflictError: 409,
    e.KbEntryExists: 409,
    e.TurnIdConflict: 409,
    e.StateError: 409,
    e.IndexError_: 500,
    e.StaleIndexError: 500,
    e.ModelError: 503,
    e.NotReadyError: 503,
    e.ServerBusyError: 503,
    e.OverloadedError: 503,
    Unauthorized: 401,
    AuthMissing: 401,
    AuthInvalid: 401,
    Forbidden: 403,
    UnknownTenant: 403,
    OriginRefused: 403,
    TooManyRequests: 429,
    AuthLocked: 429,
    TooManyConnections: 429,
    SlowConsumer: 503,
}


def http_status(exc: e.AssistError) -> int:
    """HTTP status of ``exc``: its own class's entry, else the nearest mapped ancestor's.

    The fallback only matters for classes added after this table was written; the contract
    test makes sure it is never needed in a release.
    """
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]  # type: ignore[index]
    return 500


def error_body(exc: e.AssistError) -> dict[str, Any]:
    """The JSON body of an error response: ``{"code", "message"}`` (plus ``details`` when the error has them)."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    return body


def retry_headers(exc: e.AssistError) -> dict[str, str] | None:
    """``Retry-After`` (RFC 9110 §10.2.3; whole seconds, rounded up) for errors that say when to come
    back (``AssistError.retry_after_s``: rate limits, lockouts, a busy server)."""
    seconds = exc.retry_after_s
    return {"Retry-After": str(max(1, math.ceil(seconds)))} if seconds is not None else None


def error_frame_fields(exc: e.AssistError) -> dict[str, Any]:
    """The fields an ``error`` frame takes from ``exc`` (the frame model adds ``type``/``v``/``seq``)."""
    fields: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, e.ServerBusyError):
        fields["retry_after"] = exc.retry_after
    return fields


class ErrorOut(BaseModel):
    """The body of every error response."""

    code: str = Field(description="stable machine-readable code, e.g. turn.text_too_long, input.too_long")
    message: str
    details: Any = Field(None, description="per-field problems for invalid input")


def document_errors(schema: dict[str, Any]) -> None:
    """Make ``schema`` (an OpenAPI document) say what errors really look like: ``ErrorOut``.

    FastAPI documents its own 422 body (``HTTPValidationError``), which this service never sends;
    every 4xx of every operation is an ``ErrorOut``, and clients (and schemathesis) check
    responses against this.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for item in schema.get("paths", {}).values():
        for op in item.values():
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "invalid input: {code, message, details}", "content": content}
            responses["4XX"] = {"description": "client error: {code, message} (400, 401, 404, 409, 413 ...)",
                                "content": content}
            for status, response in responses.items():
                if status.startswith(("4", "5")) and status != "422":
                    response.setdefault("content", content)


def internal_error(context: str, exc: BaseException) -> e.AssistError:
    """Log an unexpected exception once, with context, and return the generic error to answer with."""
    _log.error("unexpected error in %s", context, exc_info=exc)
    return e.AssistError("internal error; it has been logged")


_HTTP_CODES = {401: "auth.unauthorized", 403: "auth.forbidden", 404: "not_found", 405: "method_not_allowed",
               413: e.BodyTooLargeError.code}


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers that turn errors into ``{"code", "message"}`` responses."""

    def count(request: Request, code: str) -> None:
        services = getattr(request.app.state, "services", None)
        if services is not None:
            services.metrics.errors.labels(code=code).inc()

    async def on_assist_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, e.AssistError)
        count(request, exc.code)
        return JSONResponse(error_body(exc), status_code=http_status(exc), headers=retry_headers(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's request validation: same shape as ValidationError, with pydantic's locations.
        assert isinstance(exc, RequestValidationError)
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{loc}: {first.get('msg', 'invalid request')}" if loc else "invalid request"
        details = [{"loc": [str(p) for p in x.get("loc", ())], "msg": x.get("msg", "")} for x in errs]
        code = e.FieldTooLongError.code if first.get("type") in e.TOO_LONG_TYPES else e.ValidationError.code
        count(request, code)
        return JSONResponse({"code": code, "message": message, "details": details}, status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        err = internal_error(f"{request.method} {request.url.path}", exc)
        count(request, err.code)
        return JSONResponse(error_body(err), status_code=500)

    app.add_exception_handler(e.AssistError, on_assist_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
