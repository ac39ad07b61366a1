"""Bearer tokens for teams and the organiser: shown once, stored only as a salted hash.

A token is ``"<token_id>.<secret>"``. ``token_id`` (64 random bits, hex) is the database's primary
key, so checking a request costs one indexed lookup and one hash, never a scan over all teams. The
secret is 256 random bits (``secrets.token_urlsafe(32)``); the database keeps a per-token random
salt and ``HMAC-SHA256(key=salt, msg=secret)``, compared with ``hmac.compare_digest``.

Why a keyed SHA-256 and not scrypt/PBKDF2: slow KDFs protect guessable passwords from offline
guessing; a 256-bit random secret cannot be guessed even at billions of hashes a second, so a slow
hash would add nothing but ~50 ms of CPU per request (50 concurrent submissions would queue).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

DUMMY_SALT = secrets.token_bytes(16)  # for unknown ids, so they cost the same work


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: the organiser, or a team (``team_id``, ``team_name``)."""

    role: str  # "team" or "organiser"
    team_id: int | None = None
    team_name: str | None = None


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def verify_secret(secret: str, salt: bytes, digest: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), digest)


def new_token(role: str, team_id: int | None, now: datetime) -> tuple[str, dict]:
    """The token to show once, and the row to store (id, salt, digest; never the secret)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    row = {
        "token_id": token_id,
        "salt": salt,
        "digest": hash_secret(secret, salt),
        "role": role,
        "team_id": team_id,
        "created_at": now,
    }
    return f"{token_id}.{secret}", row
