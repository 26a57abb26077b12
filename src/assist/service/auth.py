"""Who is calling: API keys -> :class:`Principal` (tenant, scope), scope checks, origins, exposure.

Every ``/v1`` REST route depends on :data:`PrincipalDep` (through :func:`require`), and the
WebSocket authenticates its handshake or ``hello`` with the same :class:`Authenticator`, so one
rule set decides for both transports:

- an ``ak_<id>_<secret>`` key (``assist keys create``) is looked up by its id and checked in
  constant time against the stored SHA-256 (see :mod:`assist.apikeys`);
- ``ASSIST_API_TOKEN``, if set, is tenant ``default`` with scope ``admin``;
- with neither configured the service is **open**: everyone is tenant ``default`` with scope
  ``admin``. That is the embedded default on a loopback host; :func:`exposure_problem` refuses it
  elsewhere and in prod.

Failed authentications count per client address (:class:`~assist.service.limits.FailureLockout`);
a locked address gets ``auth.locked`` before its key is even parsed. Requests are then metered per
key (:class:`~assist.service.limits.TokenBuckets`).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from assist.apikeys import parse_key, secret_matches
from assist.errors import NotReadyError
from assist.service.errors import (
    AuthInvalid,
    AuthLocked,
    AuthMissing,
    Forbidden,
    OriginRefused,
    TooManyRequests,
)
from assist.service.limits import Clock, ConnectionSlots, FailureLockout, TokenBuckets
from assist.settings import Settings
from assist.store.db import Database
from assist.store.models import DEFAULT_TENANT
from assist.store.records import ApiKeyRecord, Scope

_log = logging.getLogger(__name__)

API_TOKEN_ID = "api-token"  # the key id reported for ASSIST_API_TOKEN (for limits and logs)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its tenant, its scope, and which key (None: the open service)."""

    tenant: str
    scope: Scope
    key_id: str | None

    def allows(self, scope: Scope) -> bool:
        return self.scope is Scope.admin or self.scope is scope

    @property
    def limit_key(self) -> str | None:
        """What per-key rate and connection limits count against; None (the open service): nothing."""
        return self.key_id


OPEN = Principal(tenant=DEFAULT_TENANT, scope=Scope.admin, key_id=None)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class Authenticator:
    """Turns a presented key into a :class:`Principal`; one per app (``AppServices.auth``).

    Verified keys and the "are there any keys" answer are cached for ``auth_cache_s``, so a
    request costs no store round trip; a revoked key stops working within that time.
    """

    def __init__(self, db: Database, settings: Settings, *, clock: Clock = time.monotonic) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.lockout = FailureLockout(settings.auth_fail_limit, settings.auth_fail_window_s,
                                      settings.auth_lockout_s, clock=clock)
        self.rest_buckets = TokenBuckets(settings.rest_rate_per_s, settings.rest_burst, clock=clock)
        self.turn_buckets = TokenBuckets(settings.ws_turn_rate_per_s, settings.ws_turn_burst, clock=clock)
        self.connections = ConnectionSlots(settings.ws_max_per_key, settings.ws_max_total)
        self._keys: dict[str, tuple[float, ApiKeyRecord, str] | tuple[float, None, None]] = {}
        self._any_keys: tuple[float, bool] | None = None

    async def has_keys(self) -> bool:
        """True when API keys exist or ``ASSIST_API_TOKEN`` is set: the service is not open."""
        if self.settings.api_token:
            return True
        now = self.clock()
        if self._any_keys is None or now - self._any_keys[0] > self.settings.auth_cache_s:
            async with self.db.transaction() as uow:
                self._any_keys = (now, await uow.keys.count_active() > 0)
        return self._any_keys[1]

    async def authenticate(self, token: str | None, client: str) -> Principal:
        """The principal of ``token`` presented by ``client`` (an address).

        Raises ``AuthLocked`` (429) while ``client`` is locked out, ``AuthMissing`` /
        ``AuthInvalid`` (401) otherwise when the token does not authenticate.
        """
        locked = self.lockout.locked_for(client)
        if locked is not None:
            raise AuthLocked(f"too many failed authentications from this address; retry in {locked:.0f} s",
                             retry_after_s=locked)
        if not await self.has_keys():
            return OPEN
        if not token:
            raise AuthMissing("authentication required: send an API key as 'Authorization: Bearer <key>'")
        principal = await self._verify(token)
        if principal is None:
            if self.lockout.fail(client) is not None:
                _log.warning("auth: %s locked out for %.0f s after repeated failures", client,
                             self.settings.auth_lockout_s)
            raise AuthInvalid("invalid, revoked or malformed API key")
        return principal

    async def _verify(self, token: str) -> Principal | None:
        expected = self.settings.api_token
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return Principal(tenant=DEFAULT_TENANT, scope=Scope.admin, key_id=API_TOKEN_ID)
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        record, stored = await self._lookup(key_id)
        if record is None or stored is None or not secret_matches(secret, stored):
            return None
        return Principal(tenant=record.tenant_id, scope=record.scope, key_id=record.id)

    async def _lookup(self, key_id: str) -> tuple[ApiKeyRecord | None, str | None]:
        now = self.clock()
        hit = self._keys.get(key_id)
        if hit is not None and now - hit[0] <= self.settings.auth_cache_s:
            return hit[1], hit[2]
        async with self.db.transaction() as uow:
            found = await uow.keys.secret_hash(key_id)
        if len(self._keys) > 10_000:  # a flood of made-up ids must not grow the cache without bound
            self._keys.clear()
        self._keys[key_id] = (now, *found) if found else (now, None, None)
        return found if found else (None, None)

    def meter_rest(self, principal: Principal) -> None:
        self._meter(self.rest_buckets, principal, "requests")

    def meter_turn(self, principal: Principal) -> None:
        self._meter(self.turn_buckets, principal, "turns")

    @staticmethod
    def _meter(buckets: TokenBuckets, principal: Principal, what: str) -> None:
        if principal.limit_key is None:
            return
        wait = buckets.take(principal.limit_key)
        if wait is not None:
            raise TooManyRequests(f"rate limit of this key's {what} reached ({buckets.rate:g}/s, burst "
                                  f"{buckets.burst}); retry in {wait:.2f} s", retry_after_s=wait)


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# Declared as FastAPI's HTTPBearer so every operation that needs a key carries
# `security: [{"bearer": ["<scope>"]}]` in openapi.yaml (the role-name form OpenAPI allows for
# non-OAuth schemes). auto_error=False: the Authenticator decides, open mode included.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", description=(
    "An API key from `assist keys create --tenant T --scope console|crm|admin`, or ASSIST_API_TOKEN (tenant "
    "default, admin). An operation's security requirement names the scope it needs; admin may do everything "
    "of its tenant. No or bad key: 401 auth.missing / auth.invalid; wrong scope: 403 auth.forbidden; another "
    "tenant's object: 404; rate limit or lockout: 429 with Retry-After. With no key configured at all the "
    "service runs open (loopback only)."))


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller of a REST request, metered against its key's rate limit (``request.state.principal``)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth: Authenticator | None = request.app.state.services.auth
    if auth is None:
        raise NotReadyError(f"service is not ready ({request.app.state.services.stage}); retry shortly")
    token = credentials.credentials if credentials is not None else None
    principal = await auth.authenticate(token, client_address(request.scope))
    auth.meter_rest(principal)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class ScopeRequirement:
    """A route dependency: the caller must hold ``scope`` (admin holds all)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, principal: PrincipalDep) -> Principal:
        if not principal.allows(self.scope):
            raise Forbidden(f"this endpoint needs scope {self.scope.value!r} (or admin); the key has "
                            f"{principal.scope.value!r}")
        return principal


def require(scope: Scope) -> Any:
    """``dependencies=[require(Scope.crm)]`` on a router or route; published as the operation's security."""
    return Security(ScopeRequirement(scope), scopes=[scope.value])


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Whether a WebSocket handshake's ``Origin`` may connect (see ``Settings.ws_origins``).

    Browsers always send Origin on WebSocket handshakes, so refusing foreign ones stops a page
    on another site from driving a console's conversations with the user's network position.
    Non-browser clients send none and are judged by their key alone. Without a configured list,
    only this service's own pages on a loopback address pass: the origin must be a loopback host
    *and* the address the handshake was sent to (``Host``), which also defeats DNS rebinding (a
    rebound ``evil.example`` page sends its own name as Origin).
    """
    if origin is None:
        return True
    allowed = settings.ws_origins
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    return (parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")
            and host is not None and parts.netloc == host)


def check_origin(origin: str | None, host: str | None, settings: Settings) -> None:
    if not origin_allowed(origin, host, settings):
        raise OriginRefused(f"WebSocket origin {origin!r} is not allowed (ASSIST_WS_ORIGINS)")


def exposure_problem(settings: Settings, *, has_keys: bool) -> str | None:
    """Why the service must not start open, or None. Open = no API key and no ASSIST_API_TOKEN."""
    if has_keys:
        return None
    if settings.env == "prod":
        return "ASSIST_ENV=prod without any API key or ASSIST_API_TOKEN: create one with `assist keys create`"
    if not settings.loopback and not settings.allow_open:
        return (f"refusing to serve {settings.host} without authentication: create an API key "
                "(`assist keys create --tenant default --scope admin`) or set ASSIST_ALLOW_OPEN=true")
    return None
