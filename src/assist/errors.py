"""Expected failures of assist, each with a stable machine-readable ``code``.

The tree::

    AssistError                      code "internal"
    ├── ValidationError              "invalid"            bad input from a client
    │   ├── DataFileError            "data.invalid"       a shop/data file has bad records (file, line, field)
    │   ├── BadFrameError            "ws.bad_frame"       WebSocket frame that is not valid JSON / schema
    │   ├── UnknownFrameError        "ws.unknown_type"    WebSocket frame with an unknown ``type``
    │   ├── TextTooLongError         "turn.text_too_long"
    │   ├── FieldTooLongError        "input.too_long"     a string or list over its limit (assist.limits)
    │   ├── BodyTooLargeError        "request.too_large"  a request body over its byte cap
    │   ├── FrameTooLargeError       "ws.frame_too_large" a WebSocket frame over its byte cap
    │   ├── ConversationMismatch     "ws.conversation_mismatch"  a frame names another conversation
    │   └── ReplayInputError         "replay.invalid"
    ├── NotFoundError                "not_found"
    │   ├── KbEntryNotFound          "kb.entry_not_found"
    │   ├── ConversationNotFound     "conversation.not_found"
    │   ├── SuggestionNotFound       "suggestion.not_found"
    │   └── ReplayNotFound           "replay.not_found"
    ├── ConflictError                "conflict"
    │   ├── KbEntryExists            "kb.entry_exists"
    │   ├── TurnIdConflict           "turn.id_conflict"   a turn_id reused with another text or role
    │   └── StateError               "ws.state"           frame not allowed in the session's phase
    ├── IndexError_                  "index.invalid"
    │   └── StaleIndexError          "index.stale"        persisted index does not match KB / encoder
    ├── ModelError                   "model.unavailable"  a model file is missing or does not load
    ├── NotReadyError                "service.not_ready"
    │   └── OverloadedError          "service.overloaded" /readyz under overload (when set to answer 503)
    └── ServerBusyError              "server.busy"        backlog full: resend after ``retry_after`` s

Stages and stores raise these; they know nothing about HTTP. ``service/errors.py``
maps each class to an HTTP status and a WebSocket ``error`` frame.
"""

from __future__ import annotations

from dataclasses import dataclass


class AssistError(Exception):
    code = "internal"
    # Seconds after which the client may try again (a rate limit, a lockout, a busy server): the
    # ``Retry-After`` header of the response. None: nothing to say.
    retry_after_s: float | None = None

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(AssistError):
    code = "invalid"


@dataclass(frozen=True)
class RecordProblem:
    """One bad record in a data file: where it is and what is wrong."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class DataFileError(ValidationError):
    code = "data.invalid"

    def __init__(self, problems: list[RecordProblem]) -> None:
        self.problems = problems
        head = "\n".join(str(p) for p in problems[:50])
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{len(problems)} invalid record(s):\n{head}{more}",
            details=[p.__dict__ for p in problems],
        )


class BadFrameError(ValidationError):
    code = "ws.bad_frame"


class UnknownFrameError(ValidationError):
    code = "ws.unknown_type"


class TextTooLongError(ValidationError):
    code = "turn.text_too_long"


class FieldTooLongError(ValidationError):
    code = "input.too_long"


# pydantic error types that mean "over a limit of assist.limits": answered as FieldTooLongError.
TOO_LONG_TYPES = frozenset({"string_too_long", "too_long"})


class BodyTooLargeError(ValidationError):
    code = "request.too_large"


class FrameTooLargeError(ValidationError):
    code = "ws.frame_too_large"


class ConversationMismatch(ValidationError):
    code = "ws.conversation_mismatch"


class ReplayInputError(ValidationError):
    code = "replay.invalid"


class NotFoundError(AssistError):
    code = "not_found"


class KbEntryNotFound(NotFoundError):
    code = "kb.entry_not_found"


class ConversationNotFound(NotFoundError):
    code = "conversation.not_found"


class SuggestionNotFound(NotFoundError):
    code = "suggestion.not_found"


class ReplayNotFound(NotFoundError):
    code = "replay.not_found"


class ConflictError(AssistError):
    code = "conflict"


class KbEntryExists(ConflictError):
    code = "kb.entry_exists"


class TurnIdConflict(ConflictError):
    code = "turn.id_conflict"


class StateError(ConflictError):
    code = "ws.state"


class IndexError_(AssistError):  # trailing underscore: do not shadow the builtin IndexError
    code = "index.invalid"


class StaleIndexError(IndexError_):
    code = "index.stale"


class ModelError(AssistError):
    code = "model.unavailable"


class NotReadyError(AssistError):
    code = "service.not_ready"


class OverloadedError(NotReadyError):
    code = "service.overloaded"


class ServerBusyError(AssistError):
    """The analysis backlog is at its bound; the turn was *not* stored. Resend it after ``retry_after`` seconds."""

    code = "server.busy"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after
        self.retry_after_s = float(retry_after)


def all_error_classes() -> list[type[AssistError]]:
    """Every AssistError class, for the contract test that each code is mapped."""
    out: list[type[AssistError]] = []
    todo: list[type[AssistError]] = [AssistError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out
