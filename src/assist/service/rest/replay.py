"""Replay over REST: upload logged conversations, follow the run, fetch the report.

    POST /v1/replay                    JSONL body (raw, or a file in multipart/form-data) -> 202 job
    GET  /v1/replay                    recent jobs (no reports)
    GET  /v1/replay/{id}               status, progress, input problems; the report JSON once done
    GET  /v1/replay/{id}/events        server-sent events: progress ... then done | failed
    GET  /v1/replay/{id}/report.html   the self-contained HTML report
    GET  /v1/replay/{id}/turns         every prediction, NDJSON

The upload is parsed at once (malformed lines come back in the 202 body with their line numbers
and are skipped; an upload without any valid conversation is refused with ``replay.invalid``).
The replay itself runs in the background, in a worker thread, one job at a time so a big replay
cannot take every core from live conversations; it uses the served pipeline and engine through
:func:`assist.replay.run.evaluate`, the same function ``assist replay`` calls, and keeps its
conversation states in memory, so it never touches live conversations. Jobs live in memory (the
last :data:`KEEP_JOBS`) and are lost on restart; ``assist replay`` writes files for keeps.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from assist.errors import AssistError, BodyTooLargeError, ReplayInputError, ReplayNotFound
from assist.replay.parse import ParsedLogs, parse_logs
from assist.replay.report import render_html
from assist.replay.results import ConversationResult
from assist.replay.run import Progress, engine_for_shop, evaluate
from assist.service.auth import PrincipalDep
from assist.service.deps import ServicesDep, SettingsDep, TenantDep
from assist.service.tenants import TenantServices
from assist.settings import Settings

_log = logging.getLogger(__name__)

# An upload is held in memory while it is parsed; logs bigger than this belong to `assist replay`.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
KEEP_JOBS = 20
# SSE comment sent when nothing happened for this long, so proxies keep the stream open.
HEARTBEAT_S = 15.0

JobStatus = Literal["queued", "running", "done", "failed"]


class ProgressOut(BaseModel):
    done: int = 0
    total: int = 0
    turns_done: int = 0
    turns_total: int = 0
    failed: int = Field(0, description="conversations that could not be replayed")


class ProblemOut(BaseModel):
    line: int
    field: str
    message: str


class InputOut(BaseModel):
    source: str
    sha256: str
    lines: int
    conversations: int
    skipped_lines: int
    problems: list[ProblemOut] = Field(description="malformed lines (skipped), with their line numbers")
    warnings: list[ProblemOut] = Field(default_factory=list)


class ReplayJobOut(BaseModel):
    id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: ProgressOut
    input: InputOut
    error: dict[str, str] | None = Field(None, description="{code, message} when the job failed")
    summary: dict[str, Any] | None = Field(None, description="the report's flat summary, once done")
    report: dict[str, Any] | None = Field(None, description="report.json, once done (GET /v1/replay/{id})")
    links: dict[str, str]


@dataclass
class ReplayJob:
    """One replay run and the events it has produced (kept so late subscribers see them all)."""

    id: str
    parsed: ParsedLogs
    sha256: str
    created_at: datetime
    status: JobStatus = "queued"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: ProgressOut = field(default_factory=ProgressOut)
    report: dict[str, Any] | None = None
    results: list[ConversationResult] | None = None
    error: dict[str, str] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Record an event and wake every subscriber (event-loop thread only)."""
        self.events.append((kind, data))
        self.changed.set()
        self.changed = asyncio.Event()

    def out(self, *, with_report: bool) -> ReplayJobOut:
        p = self.parsed
        base = f"/v1/replay/{self.id}"
        return ReplayJobOut(
            id=self.id, status=self.status, created_at=self.created_at, started_at=self.started_at,
            finished_at=self.finished_at, progress=self.progress,
            input=InputOut(source=p.source, sha256=self.sha256, lines=p.lines, conversations=len(p.conversations),
                           skipped_lines=p.skipped_lines,
                           problems=[ProblemOut(line=x.line, field=x.field, message=x.message) for x in p.problems],
                           warnings=[ProblemOut(line=x.line, field=x.field, message=x.message) for x in p.warnings]),
            error=self.error, summary=self.report["summary"] if self.report else None,
            report=self.report if with_report else None,
            links={"self": base, "events": f"{base}/events", "report_html": f"{base}/report.html",
                   "turns": f"{base}/turns"},
        )


class ReplayJobs:
    """The in-memory registry of one tenant's replay jobs, and the lock that runs them one at a time.

    ``run_lock`` is shared by every tenant of an app: replays are CPU-heavy, and one at a time
    keeps their effect on live turns bounded however many tenants start one.
    """

    def __init__(self, keep: int = KEEP_JOBS, *, run_lock: asyncio.Lock | None = None) -> None:
        self.keep = keep
        self.jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self.run_lock = run_lock or asyncio.Lock()

    def add(self, job: ReplayJob) -> None:
        self.jobs[job.id] = job
        # Forget the oldest finished jobs beyond `keep`; running or queued ones are never dropped.
        for jid in [j.id for j in self.jobs.values() if j.finished][: max(0, len(self.jobs) - self.keep)]:
            del self.jobs[jid]

    def get(self, job_id: str) -> ReplayJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise ReplayNotFound(f"no replay {job_id!r} (jobs are kept in memory, the last {self.keep})")
        return job


def get_replay_jobs(services: ServicesDep, principal: PrincipalDep) -> ReplayJobs:
    # One registry per tenant of an app, created on first use; they live on the services container so
    # two apps in one process (tests) never share jobs, and a tenant never sees another's.
    registries: dict[str, ReplayJobs] | None = getattr(services, "_replay_jobs", None)
    if registries is None:
        registries = {}
        services._replay_jobs = registries  # type: ignore[attr-defined]
    jobs = registries.get(principal.tenant)
    if jobs is None:
        shared = next(iter(registries.values())).run_lock if registries else None
        jobs = registries[principal.tenant] = ReplayJobs(run_lock=shared)
    return jobs


ReplayJobsDep = Annotated[ReplayJobs, Depends(get_replay_jobs)]

# The scope (admin) is required where the router is mounted (app.py), like every other REST router.
router = APIRouter(prefix="/v1/replay", tags=["replay"])


# ---------------------------------------------------------------- upload


def _multipart_file(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The first file part of a multipart/form-data body (or the first part if none is a file).

    Parsed with the standard library's MIME parser rather than python-multipart, which the service
    does not otherwise need.
    """
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ReplayInputError("multipart body could not be parsed (boundary missing?)")
    parts = list(msg.iter_parts())
    if not parts:
        raise ReplayInputError("multipart body has no part; send the JSONL as a file field")
    part = next((p for p in parts if p.get_filename()), parts[0])
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise ReplayInputError("multipart part has no content")
    return payload, part.get_filename()


async def _read_upload(request: Request) -> tuple[bytes, str | None]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise BodyTooLargeError(f"upload larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; "
                                    "replay big logs with `assist replay`")
        chunks.append(chunk)
    body = b"".join(chunks)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        return _multipart_file(body, content_type)
    return body, None


# ---------------------------------------------------------------- background run


def _runtime_parts(tenant: TenantServices, settings: Settings) -> tuple[Any, Any, Any]:
    """(pipeline, engine, shop) the caller's tenant serves with: the live units, not copies."""
    runtime = tenant.runtime
    pipeline = tenant.conversations.pipeline or getattr(runtime, "pipeline", None)
    shop = getattr(runtime, "shop", None)
    engine = tenant.engine or getattr(runtime, "engine", None)
    if pipeline is None or shop is None:
        raise AssistError("the served runtime has no pipeline or shop")
    if engine is None:
        engine = engine_for_shop(shop, settings.rules_dir, getattr(runtime, "dialogue", None),
                                 getattr(runtime, "actions", None))
    return pipeline, engine, shop


async def _run_job(job: ReplayJob, jobs: ReplayJobs, tenant: TenantServices, settings: Settings) -> None:
    loop = asyncio.get_running_loop()

    def on_progress(p: Progress) -> None:  # called in the worker thread
        loop.call_soon_threadsafe(_record_progress, job, p)

    async with jobs.run_lock:
        job.status = "running"
        job.started_at = datetime.now(UTC)
        job.emit("status", {"status": "running"})
        try:
            pipeline, engine, shop = _runtime_parts(tenant, settings)
            report, results = await anyio.to_thread.run_sync(
                lambda: evaluate(job.parsed, pipeline=pipeline, engine=engine, shop=shop, progress=on_progress,
                                 input_sha256=job.sha256))
        except Exception as exc:
            _log.exception("replay %s failed", job.id)
            code = exc.code if isinstance(exc, AssistError) else "internal"
            job.status, job.error = "failed", {"code": code, "message": f"replay failed: {exc}"}
            job.finished_at = datetime.now(UTC)
            job.emit("failed", job.error)
            return
        job.report, job.results = report, results
        job.status = "done"
        job.finished_at = datetime.now(UTC)
        job.emit("done", {"summary": report["summary"], "links": job.out(with_report=False).links})


def _record_progress(job: ReplayJob, p: Progress) -> None:
    job.progress = ProgressOut(done=p.done, total=p.total, turns_done=p.turns_done, turns_total=p.turns_total,
                               failed=p.failed)
    job.emit("progress", {**job.progress.model_dump(), "conversation_id": p.conversation_id})


# ---------------------------------------------------------------- routes


@router.post("", status_code=202, response_model=ReplayJobOut,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-ndjson": {"schema": {"type": "string", "description": "logged conversations, "
                                                     "one JSON object per line (DESIGN §3)"}},
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}}}}})
async def start_replay(request: Request, tenant: TenantDep, settings: SettingsDep, jobs: ReplayJobsDep,
                       name: Annotated[str | None, Query(max_length=200, description="label for the logs")] = None,
                       ) -> ReplayJobOut:
    """Upload logged conversations (JSONL) and start replaying them against the served shop.

    Malformed lines are listed (with line numbers) in ``input.problems`` and skipped. Follow the
    run at ``links.events``; the report is at ``links.self`` once ``status`` is ``done``.
    """
    body, filename = await _read_upload(request)
    if not body.strip():
        raise ReplayInputError("empty upload: send the logged conversations as JSONL")
    label = name or filename or "<upload>"
    parsed = parse_logs(body, name=label)
    if not parsed.conversations:
        raise ReplayInputError(f"no valid conversation in the upload ({len(parsed.problems)} problem(s))",
                               details=[p.__dict__ for p in parsed.problems[:200]])
    job = ReplayJob(id=uuid.uuid4().hex[:12], parsed=parsed, sha256=hashlib.sha256(body).hexdigest(),
                    created_at=datetime.now(UTC))
    job.progress = ProgressOut(total=len(parsed.conversations),
                               turns_total=sum(len(p.conversation.turns) for p in parsed.conversations))
    jobs.add(job)
    job.task = asyncio.create_task(_run_job(job, jobs, tenant, settings), name=f"replay-{job.id}")
    return job.out(with_report=False)


@router.get("", response_model=list[ReplayJobOut])
async def list_replays(jobs: ReplayJobsDep) -> list[ReplayJobOut]:
    """Recent replay jobs, newest first (without their reports)."""
    return [j.out(with_report=False) for j in reversed(jobs.jobs.values())]


@router.get("/{replay_id}", response_model=ReplayJobOut)
async def get_replay(replay_id: str, jobs: ReplayJobsDep,
                     report: Annotated[bool, Query(description="include report.json when done")] = True,
                     ) -> ReplayJobOut:
    """Status and progress of a replay; with its report once done."""
    return jobs.get(replay_id).out(with_report=report)


def _sse(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


@router.get("/{replay_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "SSE: `status`, `progress` ..., then `done` or `failed`; "
                                            "every event has an id, resume with Last-Event-ID"}})
async def replay_events(replay_id: str, jobs: ReplayJobsDep,
                        last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """Server-sent events of a replay, from the start (or after ``Last-Event-ID``) until it ends."""
    job = jobs.get(replay_id)
    start = int(last_event_id) + 1 if last_event_id and last_event_id.isdigit() else 0

    async def stream() -> AsyncIterator[bytes]:
        i = start
        while True:
            while i < len(job.events):
                kind, data = job.events[i]
                yield _sse(i, kind, data)
                i += 1
            if job.finished and i >= len(job.events):
                return
            waiter = job.changed
            try:
                await asyncio.wait_for(waiter.wait(), timeout=HEARTBEAT_S)
            except TimeoutError:
                yield b": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _done(job: ReplayJob) -> dict[str, Any]:
    if job.report is None:
        raise ReplayNotFound(f"replay {job.id} has no report ({job.status})")
    return job.report


@router.get("/{replay_id}/report.html", response_class=HTMLResponse)
async def replay_report_html(replay_id: str, jobs: ReplayJobsDep) -> HTMLResponse:
    """The report as one self-contained HTML page."""
    return HTMLResponse(render_html(_done(jobs.get(replay_id))))


@router.get("/{replay_id}/turns", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
async def replay_turns(replay_id: str, jobs: ReplayJobsDep) -> StreamingResponse:
    """Every replayed turn with its prediction and gold, one JSON object per line."""
    job = jobs.get(replay_id)
    _done(job)
    results = job.results or []

    async def lines() -> AsyncIterator[bytes]:
        for c in results:
            for t in c.turns:
                yield (json.dumps(t.to_dict(), ensure_ascii=False, default=str) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
