"""API key format: ``ak_<id>_<secret>``, minted once, stored as the id plus the SHA-256 of the secret.

The id (12 hex characters) is public: it is what ``assist keys list`` shows and how a presented
key is looked up, so verification is one primary-key read and one constant-time comparison of
two hashes, never a scan over all keys. The secret is 32 random bytes (256 bits, URL-safe
base64), so guessing is hopeless even without the lockout, and a stolen database does not give
usable keys: SHA-256 of a 256-bit random value cannot be inverted, and a slow password hash is
only needed for low-entropy secrets that humans choose.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "ak"
_KEY = re.compile(r"ak_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class MintedKey:
    """A new key: ``token`` is shown to the operator once; only ``id`` and ``secret_sha256`` are stored."""

    id: str
    token: str
    secret_sha256: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_key() -> MintedKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return MintedKey(id=key_id, token=f"{PREFIX}_{key_id}_{secret}", secret_sha256=hash_secret(secret))


def parse_key(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else None (nothing to look up)."""
    m = _KEY.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison, so response timing says nothing about how much of a guess was right."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)
