"""API keys: created with scopes, stored only as a hash, revocable; the gateway checks them.

A key reads ``apl_<id>_<secret>``. The id finds the row; the secret is compared by its sha256
(the secret is 192 random bits, so a fast hash is enough — there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time

import msgspec

from appliance.errors import InvalidInput, NotFound
from appliance.registry import Registry
from storage.database import transaction

SCOPES = ("predict", "feedback", "admin")
DEFAULT_RATE_PER_SECOND = 1000.0
PREFIX = "apl"


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_second: float
    created_at: float
    revoked_at: float | None
    secret_sha256: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether the key may use a route of this scope; admin may use every route."""
        return scope in self.scopes or "admin" in self.scopes


def create_key(
    conn: sqlite3.Connection,
    scopes: list[str],
    name: str = "",
    rate_per_second: float = DEFAULT_RATE_PER_SECOND,
    actor: str = "cli",
) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the secret token, which is shown once and never stored."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InvalidInput(f"unknown scope {', '.join(bad) or '(none given)'}; choose from {', '.join(SCOPES)}")
    if not rate_per_second > 0:
        raise InvalidInput("the rate limit must be a positive number of requests per second")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    ordered = tuple(s for s in SCOPES if s in scopes)
    now = time.time()
    with transaction(conn):
        conn.execute(
            "INSERT INTO api_keys (id, name, secret_sha256, scopes, rate_per_second, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, name, _digest(secret), ",".join(ordered), rate_per_second, now),
        )
        Registry(conn).audit(
            actor,
            "key_created",
            None,
            None,
            {"key": key_id, "name": name, "scopes": list(ordered), "rate_per_second": rate_per_second},
        )
    return ApiKey(key_id, name, ordered, rate_per_second, now, None), f"{PREFIX}_{key_id}_{secret}"


def revoke_key(conn: sqlite3.Connection, key_id: str, actor: str = "cli") -> ApiKey:
    """Revoke a key for good; a running server refuses it within a second."""
    with transaction(conn):
        row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"no API key with id '{key_id}'; see `appliance keys list`")
        if row["revoked_at"] is None:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), key_id))
            Registry(conn).audit(actor, "key_revoked", None, None, {"key": key_id, "name": row["name"]})
    return next(k for k in list_keys(conn) if k.id == key_id)


def list_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first (with hashes, for the gateway)."""
    rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at")
    return [
        ApiKey(
            r["id"],
            r["name"],
            tuple(r["scopes"].split(",")),
            r["rate_per_second"],
            r["created_at"],
            r["revoked_at"],
            r["secret_sha256"],
        )
        for r in rows
    ]


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(key: ApiKey, secret: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(key.secret_sha256, _digest(secret))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
