"""In-process limits tied to API keys and client addresses: token buckets, auth lockout, connection slots.

Pure bookkeeping over an injected monotonic clock (tests step it by hand, no sleeping); the
service raises the matching 429 errors. Per replica: with several replicas behind a balancer each
enforces its own share, which bounds the total at replicas x limit.

Memory stays bounded under a flood of distinct keys or addresses: idle entries are pruned when
a table grows past ``max_entries`` (a full bucket or an expired failure window holds nothing
worth keeping).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One token bucket per key: ``rate_per_s`` refill, ``burst`` capacity; ``rate_per_s <= 0`` disables it."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Clock = time.monotonic,
                 max_entries: int = 10_000) -> None:
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self.clock = clock
        self.max_entries = max_entries
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """Take one token for ``key``: None when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return None
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.at >= full]:
            del self._buckets[key]


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class FailureLockout:
    """``limit`` failed authentications from one address within ``window_s`` lock it for ``lockout_s``.

    While locked, every attempt is refused before any key is looked at, so a locked client cannot
    keep guessing; a success does not clear earlier failures (guess, then use a known key, repeat).
    """

    def __init__(self, limit: int, window_s: float, lockout_s: float, *, clock: Clock = time.monotonic,
                 max_entries: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self.max_entries = max_entries
        self._by_client: dict[str, _Failures] = {}

    def locked_for(self, client: str) -> float | None:
        """Seconds ``client`` stays locked, or None."""
        entry = self._by_client.get(client)
        if entry is None:
            return None
        left = entry.locked_until - self.clock()
        return left if left > 0 else None

    def fail(self, client: str) -> float | None:
        """Record a failure; returns the lockout's length when this one locks the client."""
        if self.limit <= 0:
            return None
        now = self.clock()
        entry = self._by_client.get(client)
        if entry is None:
            if len(self._by_client) >= self.max_entries:
                self._prune(now)
            entry = self._by_client[client] = _Failures()
        entry.times.append(now)
        while entry.times and entry.times[0] <= now - self.window_s:
            entry.times.popleft()
        if len(entry.times) >= self.limit:
            entry.times.clear()
            entry.locked_until = now + self.lockout_s
            return self.lockout_s
        return None

    def _prune(self, now: float) -> None:
        stale = [c for c, f in self._by_client.items()
                 if f.locked_until <= now and (not f.times or f.times[-1] <= now - self.window_s)]
        for client in stale:
            del self._by_client[client]


class ConnectionSlots:
    """Open WebSocket connections in total (taken at the handshake, before anyone is known) and
    per key (taken once the connection has authenticated), each capped."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key = per_key
        self.total = total
        self._by_key: dict[str, int] = {}
        self.open = 0

    def connect(self) -> str | None:
        """Take a slot of the total; None on success, else the limit reached."""
        if self.open >= self.total:
            return f"the server's limit of {self.total} open WebSocket connections is reached"
        self.open += 1
        return None

    def disconnect(self) -> None:
        self.open = max(0, self.open - 1)

    def bind(self, key: str) -> str | None:
        """Take one of ``key``'s slots; None on success, else the limit reached."""
        held = self._by_key.get(key, 0)
        if held >= self.per_key:
            return f"this key's limit of {self.per_key} open WebSocket connections is reached"
        self._by_key[key] = held + 1
        return None

    def unbind(self, key: str) -> None:
        held = self._by_key.get(key, 0)
        if held <= 1:
            self._by_key.pop(key, None)
        else:
            self._by_key[key] = held - 1
