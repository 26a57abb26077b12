"""Input limits: the maximum size of everything a client may send and the service stores.

One module, so every wire model (REST bodies, WebSocket frames, CRM profiles and events, KB
entries) takes its bounds from the same numbers and they show in ``openapi.yaml`` as
``maxLength`` / ``maxItems`` / ``minimum`` / ``maximum``. The reasons behind the numbers:

- ids travel in URLs and logs; 128 characters hold any UUID, order number or CRM key;
- labels (tier, region, SKU, category, tag, batch, tracking number) are short by nature, and a
  profile rides along in every analysis frame of its conversations, so a label is capped at 128;
- free text an agent or the CRM writes (feedback ``edited_text``, an event ``detail``) is capped
  like a turn: the agent console shows it, nothing reads pages of it;
- KB entries: every similar phrasing is embedded on the KB write path while the KB write lock is
  held, so the number and length of phrasings bound how long one edit can hold it.

The value types here (:data:`SafeStr`, :data:`Timestamp`) also refuse what JSON can carry but the
store cannot: lone UTF-16 surrogates (``"\\ud800"``) and dates outside 2000-01-01 .. 2100-01-01.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

ID_MAX = 128
LABEL_MAX = 128
NOTE_MAX = 2000  # edited_text, event detail, order exception: like a turn's default limit
TURN_TEXT_MAX = 2000  # default of ASSIST_MAX_TEXT_CHARS, which may lower (not raise) it
QUERY_MAX = 2000  # KB search query
NONCE_MAX = 128
TOKEN_MAX = 512  # a bearer token in hello

KB_QUESTION_MAX = 500
KB_ANSWER_MAX = 5000
KB_SIMILAR_ITEMS = 20
KB_SIMILAR_MAX = 200
KB_CATEGORY_MAX = 200
KB_TAG_ITEMS = 50  # also the SKUs of an entry

ORDERS_MAX = 200  # orders in one customer profile
SKUS_MAX = 50  # SKUs given as retrieval context
QTY_MAX = 10_000

SEQ_MAX = 2**63 - 1  # seqs are stored as signed 64-bit integers
BODY_MAX_BYTES = 1 << 20  # any JSON request body; replay uploads have their own cap
WS_FRAME_MAX_BYTES = 64 << 10  # one client frame: a hello with a full profile fits easily

DATE_MIN = datetime(2000, 1, 1, tzinfo=UTC)
DATE_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def is_unicode(value: str) -> bool:
    """False for a str with lone UTF-16 surrogates: valid in JSON text and in a Python str, but not
    encodable as UTF-8, so the store and every JSON encoder downstream would fail on it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def no_surrogates(value: str) -> str:
    if not is_unicode(value):
        raise ValueError("text contains a lone UTF-16 surrogate (not valid Unicode)")
    return value


def _refuse_constant(name: str) -> float:
    # json.loads takes NaN / Infinity by default; they are not JSON and no field may hold them.
    raise ValueError(f"{name} is not a JSON value")


def loads_json(raw: str | bytes) -> Any:
    """``json.loads`` for client input: ``ValueError`` (never ``RecursionError``) for anything that is
    not plain JSON, including NaN / Infinity and nesting deeper than the parser's recursion limit."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def in_date_range(value: datetime) -> datetime:
    """Refuse dates outside ``DATE_MIN`` .. ``DATE_MAX``; later arithmetic (+/- days, tz conversion)
    must never overflow on a date the service accepted."""
    # The year first: converting a year-1 or year-9999 date to UTC can itself overflow.
    if not DATE_MIN.year <= value.year < DATE_MAX.year:
        raise ValueError(f"date must be between {DATE_MIN.date()} and {DATE_MAX.date()}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not DATE_MIN <= aware < DATE_MAX:
        raise ValueError(f"date must be between {DATE_MIN.date()} and {DATE_MAX.date()}")
    return value


def text(max_length: int, *, min_length: int = 0, **field: Any) -> Any:
    """A ``str`` type of at most ``max_length`` characters that refuses lone surrogates."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, **field),
                     AfterValidator(no_surrogates)]


SafeStr = Annotated[str, AfterValidator(no_surrogates)]
Label = text(LABEL_MAX)
Note = text(NOTE_MAX)
Timestamp = Annotated[datetime, AfterValidator(in_date_range),
                      Field(description="ISO 8601; between 2000-01-01 and 2100-01-01")]
Seq = Annotated[int, Field(ge=0, le=SEQ_MAX)]
# Ids travel in URLs (REST) and logs: no whitespace or slashes, bounded length.
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=r"^[^\s/]+$"), AfterValidator(no_surrogates)]
