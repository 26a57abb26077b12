"""Overload benchmark: admission control, fairness and reindex under load, against a server it starts.

Usage::

    python bench/overload.py                                # all three experiments
    python bench/overload.py --only overload --conversations 200 --rate 2
    python bench/overload.py --src /tmp/base/src            # the same against another checkout's code

Experiments (each on a fresh ``assist serve`` with a fresh SQLite database, loopback only):

- **overload**: N conversations (default 200) each offer ``--rate`` turns/s (default 2, Poisson)
  for ``--duration`` s, far beyond what the encoder can do. A refused turn (``server.busy``) is
  counted and not resent, so "offered" stays what the clients offered. Reports offered vs
  admitted (acked) turns/s, p50/p99 of admitted turns (send -> analysis), busy frames, the work
  still processed after the clients left, and, from each conversation's transcript once the
  server has drained, **acknowledged turns lost** (acked but never processed; must be 0).
- **long**: 10 conversations at 1 turn/s; after 5 s one of them sends 4 turns of 2,000 emoji.
  Reports the latency of the other conversations' turns before, during and after.
- **reindex**: 20 conversations at 0.5 turns/s; ``POST /v1/kb/reindex`` of the demo KB after
  8 s. Reports turn latency before and during the rebuild, and how long it took.

Results go to ``bench/results/overload-<date>.json`` with machine details (and on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_load import RESULTS, Server, drain, load_lines, machine, parse_metric, pct, processed_turns

MAX_CONVERSATIONS = 500
_EMOJI = "😀"


class Console:
    """One console: sends turns, records acks, busy refusals and analyses by turn_id."""

    def __init__(self, url: str, cid: str, rng: random.Random) -> None:
        self.url, self.cid, self.rng = url, cid, rng
        self.sent: dict[str, float] = {}
        self.acked: set[str] = set()
        self.busy: dict[str, int] = {}  # turn_id -> retry_after
        self.latency: dict[str, float] = {}  # turn_id -> ms, send -> analysis
        self.server_ms: dict[str, float] = {}  # turn_id -> the analysis' timings_ms.total (in the server)
        self.errors: list[str] = []
        self.n = 0
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=1 << 22, open_timeout=60)
        await self.ws.send(json.dumps({"type": "hello", "v": 1, "conversation_id": self.cid}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
        if ack.get("type") != "ack":
            raise RuntimeError(f"hello refused: {ack}")
        self.reader = asyncio.create_task(self._read())

    async def send(self, role: str, text: str, tid: str | None = None) -> str:
        """Send a turn (``tid``: resend that turn after a ``server.busy``; latency counts from the first try)."""
        if tid is None:
            self.n += 1
            tid = f"t{self.n}"
            self.sent[tid] = time.perf_counter()
        self.busy.pop(tid, None)
        await self.ws.send(json.dumps({"type": "turn", "v": 1, "turn_id": tid, "role": role, "text": text},
                                      ensure_ascii=False))
        return tid

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                f = json.loads(raw)
                tid = f.get("turn_id")
                if f.get("type") == "ack" and f.get("ref") == "turn":
                    self.acked.add(tid)
                elif f.get("type") == "analysis" and tid in self.sent and tid not in self.latency:
                    self.latency[tid] = (time.perf_counter() - self.sent[tid]) * 1e3
                    self.server_ms[tid] = float((f.get("timings_ms") or {}).get("total", -1))
                elif f.get("type") == "error":
                    if f.get("code") == "server.busy":
                        self.busy[tid] = int(f.get("retry_after") or 0)
                    else:
                        self.errors.append(f"{f.get('code')}: {f.get('message')}")
        except websockets.ConnectionClosed:
            return

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _get_any(url: str) -> dict[str, Any]:
    """GET a JSON document whatever the status; the status goes in ``_status``."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {**json.loads(r.read()), "_status": r.status}
    except urllib.error.HTTPError as exc:
        return {**json.loads(exc.read()), "_status": exc.code}


def _post(url: str) -> Any:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


async def _open(url: str, n: int, tag: str, seed: int) -> list[Console]:
    consoles = [Console(url, f"{tag}-{i}", random.Random(seed * 7919 + i)) for i in range(n)]
    sem = asyncio.Semaphore(50)

    async def connect(c: Console) -> None:
        async with sem:
            await c.connect()

    await asyncio.gather(*(connect(c) for c in consoles))
    return consoles


def _line(c: Console, lines: tuple[list[str], list[str]], unique: list[int]) -> tuple[str, str]:
    role = "customer" if c.rng.random() < 0.6 else "agent"
    pool = lines[0] if role == "customer" else lines[1]
    unique[0] += 1
    # Unique suffix: the server's query cache would otherwise answer repeated lines for free.
    return role, (f"{c.rng.choice(pool)} {unique[0]:x}" if role == "customer" else c.rng.choice(pool))


async def _drive(consoles: list[Console], lines: tuple[list[str], list[str]], rate: float, duration: float
                 ) -> float:
    """Every console sends on its own Poisson clock for ``duration`` s; returns the window."""
    t0 = time.perf_counter()
    deadline = t0 + duration
    unique = [0]

    async def drive(c: Console) -> None:
        await asyncio.sleep(c.rng.uniform(0, 1 / rate))
        while time.perf_counter() < deadline:
            await c.send(*_line(c, lines, unique))
            await asyncio.sleep(min(c.rng.expovariate(rate), max(0.0, deadline - time.perf_counter())))

    await asyncio.gather(*(drive(c) for c in consoles))
    return time.perf_counter() - t0


async def overload(url: str, server: Server, args: argparse.Namespace, lines: tuple[list[str], list[str]]
                   ) -> dict[str, Any]:
    consoles = await _open(url, args.conversations, "ov", 1)
    probes: list[dict[str, Any]] = []

    async def probe() -> None:  # what /readyz says during the run (a balancer's view)
        base = f"http://127.0.0.1:{server.port}/readyz"
        while True:
            with contextlib.suppress(OSError, ValueError):
                probes.append(await asyncio.to_thread(_get_any, base))
            await asyncio.sleep(1.0)

    prober = asyncio.create_task(probe())
    window = await _drive(consoles, lines, args.rate, args.duration)
    prober.cancel()
    await asyncio.sleep(args.linger)  # answers still coming for admitted turns
    for c in consoles:
        await c.close()
    at_leave = await asyncio.to_thread(processed_turns, server)
    drained = await drain(server, 300)
    after = await asyncio.to_thread(processed_turns, server)
    base = f"http://127.0.0.1:{server.port}"
    lost, unanswered_live = 0, 0
    for c in consoles:
        stored = await asyncio.to_thread(_get, f"{base}/v1/conversations/{c.cid}")
        status = {t["turn_id"]: t["status"] for t in stored["turns"]}
        lost += sum(1 for tid in c.acked if status.get(tid) != "processed")
        # stored but never acked to us, or busy and stored: both would break the contract
        unanswered_live += sum(1 for tid in c.busy if tid in status)
    sent = sum(len(c.sent) for c in consoles)
    acked = sum(len(c.acked) for c in consoles)
    lat = [v for c in consoles for v in c.latency.values()]
    in_server = [v for c in consoles for v in c.server_ms.values() if v >= 0]
    metrics = server.metrics()
    t_first = min(t for c in consoles for t in c.sent.values())
    timeline = []
    for lo in range(0, int(window) + 1, 5):  # by send time: does the bound hold from the start?
        v = [ms for c in consoles for tid, ms in c.latency.items() if lo <= c.sent[tid] - t_first < lo + 5]
        b = sum(1 for c in consoles for tid in c.busy if lo <= c.sent[tid] - t_first < lo + 5)
        timeline.append({"from_s": lo, "admitted": len(v), "busy": b, "p50": pct(v, 50), "p99": pct(v, 99)})
    return {
        "conversations": args.conversations, "rate_per_conversation": args.rate, "window_s": round(window, 1),
        "offered_turns": sent, "offered_turns_per_s": round(sent / window, 1),
        "admitted_turns": acked, "admitted_turns_per_s": round(acked / window, 1),
        "busy_frames": sum(len(c.busy) for c in consoles),
        "retry_after_s": {"p50": pct([float(v) for c in consoles for v in c.busy.values()], 50),
                          "max": pct([float(v) for c in consoles for v in c.busy.values()], 100)},
        # Client-side (send -> analysis received, through this process's own loop on the same
        # cores) and server-side (arrival in the service -> analysis committed: timings_ms.total).
        "admitted_latency_ms": {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": pct(lat, 100)},
        "admitted_server_latency_ms": {"p50": pct(in_server, 50), "p99": pct(in_server, 99),
                                       "max": pct(in_server, 100)},
        "analyses_received_live": len(lat),
        "processed_after_clients_left": int(after - at_leave), "drain_s": drained,
        "acknowledged_turns_lost": lost, "busy_turns_stored": unanswered_live,
        "other_error_frames": [e for c in consoles for e in c.errors][:5],
        "server_refused": parse_metric(metrics, 'assist_admit_turns_total{outcome="refused"}'),
        "cost_model": {"encoder_scale": parse_metric(metrics, "assist_encoder_cost_scale"),
                       "turn_cpu_s": parse_metric(metrics, "assist_turn_cpu_seconds"),
                       "drain_rate": parse_metric(metrics, "assist_admit_drain_rate")},
        "readyz": {"probes": len(probes), "status_200": sum(1 for p in probes if p.get("_status") == 200),
                   "overloaded": sum(1 for p in probes if p.get("overloaded")),
                   "live_backlog_s": [p.get("live_backlog_s") for p in probes],
                   "drain_rate": [p.get("drain_rate") for p in probes]},
        "timeline_5s": timeline,
    }


async def long_turns(url: str, server: Server, lines: tuple[list[str], list[str]]) -> dict[str, Any]:
    consoles = await _open(url, 10, "long", 2)
    hog = consoles[0]
    marks: dict[str, float] = {}

    async def hogging() -> None:
        await asyncio.sleep(5)
        marks["start"] = time.perf_counter()
        # 1,999 emoji and a digit: 2,000 characters, the longest turn the server accepts. Sent at
        # once; a turn refused with server.busy is resent after retry_after, as a client should.
        texts = {await hog.send("customer", _EMOJI * 1999 + str(i)): _EMOJI * 1999 + str(i) for i in range(4)}
        resent = 0
        for _ in range(6000):  # at most 5 minutes
            if all(t in hog.latency for t in texts):
                break
            for tid, retry in list(hog.busy.items()):
                if tid in texts:
                    hog.busy.pop(tid)
                    await asyncio.sleep(retry)
                    await hog.send("customer", texts[tid], tid)
                    resent += 1
            await asyncio.sleep(0.05)
        marks["end"] = time.perf_counter()
        marks["long_ms"] = [hog.latency.get(t) for t in texts]  # type: ignore[assignment]
        marks["resent"] = resent

    await asyncio.gather(_drive(consoles[1:], lines, 1.0, 20.0), hogging())
    await asyncio.sleep(3)
    for c in consoles:
        await c.close()

    def phase(lo: float, hi: float) -> dict[str, Any]:
        v = [ms for c in consoles[1:] for tid, ms in c.latency.items() if lo <= c.sent[tid] < hi]
        return {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99), "max": pct(v, 100)}

    return {"before": phase(0, marks["start"]), "during": phase(marks["start"], marks["end"]),
            "after": phase(marks["end"], float("inf")), "long_turn_latency_ms": marks.get("long_ms"),
            "long_turns_window_s": round(marks["end"] - marks["start"], 2), "long_turns_resent": marks["resent"],
            "busy_frames_others": sum(len(c.busy) for c in consoles[1:])}


async def reindex(url: str, server: Server, lines: tuple[list[str], list[str]]) -> dict[str, Any]:
    consoles = await _open(url, 20, "rx", 3)
    marks: dict[str, Any] = {}

    async def rebuild() -> None:
        await asyncio.sleep(8)
        marks["start"] = time.perf_counter()
        marks["result"] = await asyncio.to_thread(_post, f"http://127.0.0.1:{server.port}/v1/kb/reindex")
        marks["end"] = time.perf_counter()

    async def traffic() -> None:
        # Until the rebuild is done (and at least 20 s), so "during" has turns however long it takes.
        t0 = time.perf_counter()
        while "end" not in marks or time.perf_counter() - t0 < 20:
            await _drive(consoles, lines, 0.5, 4.0)

    await asyncio.gather(traffic(), rebuild())
    await asyncio.sleep(3)
    for c in consoles:
        await c.close()

    def phase(lo: float, hi: float) -> dict[str, Any]:
        v = [ms for c in consoles for tid, ms in c.latency.items() if lo <= c.sent[tid] < hi]
        return {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99), "max": pct(v, 100)}

    return {"before": phase(0, marks["start"]), "during": phase(marks["start"], marks["end"]),
            "after": phase(marks["end"], float("inf")), "reindex": marks["result"],
            "reindex_wall_s": round(marks["end"] - marks["start"], 2),
            "busy_frames": sum(len(c.busy) for c in consoles)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    lines_c, lines_a, source = load_lines()
    lines = (lines_c, lines_a)
    report: dict[str, Any] = {"benchmark": "overload", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "code": args.src or "this checkout", "text_source": source}
    experiments = {"overload": lambda url, s: overload(url, s, args, lines),
                   "long": lambda url, s: long_turns(url, s, lines),
                   "reindex": lambda url, s: reindex(url, s, lines)}
    for name in args.only or list(experiments):
        with tempfile.TemporaryDirectory(prefix="assist-overload-") as tmp:
            env = dict(os.environ)
            env.update({"ASSIST_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db", "ASSIST_LOG_LEVEL": "WARNING",
                        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
            if args.src:
                env["PYTHONPATH"] = args.src + os.pathsep + env.get("PYTHONPATH", "")
            with Server(env, Path(tmp) / "server.log") as server:
                url = f"ws://127.0.0.1:{server.port}/v1/ws"
                res = await experiments[name](url, server)
                res["server_log_tail"] = (Path(tmp) / "server.log").read_text(errors="replace")[-600:]
                report[name] = res
                print(json.dumps({name: {k: v for k, v in res.items() if k != "server_log_tail"}},
                                 ensure_ascii=False), file=sys.stderr)
    report["machine"]["load_avg_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Overload / fairness / reindex benchmark for assist (loopback only).")
    p.add_argument("--only", nargs="+", choices=["overload", "long", "reindex"])
    p.add_argument("--conversations", type=int, default=200)
    p.add_argument("--rate", type=float, default=2.0, help="turns/s offered per conversation")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of sending (overload)")
    p.add_argument("--linger", type=float, default=5.0, help="seconds the consoles stay after sending")
    p.add_argument("--src", help="run the server from this src/ directory instead (e.g. an older checkout)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if not 1 <= args.conversations <= MAX_CONVERSATIONS or not 0 < args.rate <= 10:
        p.error(f"conversations in 1..{MAX_CONVERSATIONS}, rate in (0, 10]")
    args.duration = min(args.duration, 120.0)
    report = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"overload-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
