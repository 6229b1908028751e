"""Who may call what: the secure-by-default rules and a token-bucket rate limit per caller.

- ``health`` routes are always open (a liveness probe carries no credentials and learns nothing).
- ``admin`` routes always need a key with the admin scope, even from loopback.
- ``predict``/``feedback``/``read`` routes are open only while no key has ever been created, the
  server listens on loopback only, and the caller is on loopback; otherwise they need a key
  (``read`` — metrics, docs, model list — takes a key of any scope).
- A request a web browser sent from a page of another origin (its ``Origin`` header names another host than
  its ``Host``) is refused on every route but health: a page on any site the operator opens could otherwise
  send predictions and feedback (labels a retrain learns from) to the open loopback API. Browsers send
  ``Origin`` with every such POST; programs send none, and the API serves no page that calls it.
- The rate limit is keyed by the API key, or for open access by the socket peer's address —
  never by a header such as X-Forwarded-For that a client can forge. Under several serving workers the
  buckets are shared by all of them (``serving.shared.SharedBuckets``): a key's limit is one limit.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

from appliance.errors import Forbidden, RateLimited, Unauthorized
from appliance.gateway.keys import DEFAULT_RATE_PER_SECOND, ApiKey, parse_token, secret_matches

_HOW = "send it as `Authorization: Bearer apl_…` or `X-API-Key: apl_…`"
_MAX_BUCKETS = 10_000


class Caller:
    """Who made a request: a key id, or the socket peer for open access."""

    __slots__ = ("key_id", "peer")

    def __init__(self, key_id: str | None, peer: str):
        self.key_id = key_id
        self.peer = peer


class Limiter(Protocol):
    def take(self, who: str, rate: float) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        ...


class Gatekeeper:
    """Checks each request against the keys known to the server (refreshed from metadata.db)."""

    def __init__(
        self,
        exposed: bool,
        peer_rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        limiter: Limiter | None = None,
    ):
        self.exposed = exposed
        self.peer_rate = peer_rate_per_second
        self.limiter: Limiter = limiter or RateLimiter(clock)
        self._keys: dict[str, ApiKey] = {}
        self.rejected = {"missing": 0, "invalid": 0, "revoked": 0, "scope": 0, "rate": 0, "other_site": 0}

    def update_keys(self, keys: list[ApiKey]) -> None:
        """Swap in the current key table (one assignment; requests in flight keep the old one)."""
        self._keys = {k.id: k for k in keys}

    def admit(self, scope: str, token: str | None, peer: str | None, other_site: str | None = None) -> Caller:
        """The caller if allowed; Unauthorized (401), Forbidden (403) or RateLimited (429) otherwise.
        ``other_site``: the origin of the page a browser sent this request from, when that is not this API's."""
        peer = peer or ""
        if scope == "health":
            return Caller(None, peer)
        if other_site is not None:
            self.rejected["other_site"] += 1
            raise Forbidden(
                f"a request from a web page at {other_site} was refused: pages of other sites may not call this "
                "API (the browser would send them with the operator's access); call it from a program instead"
            )
        if token is None:
            if scope != "admin" and not self._keys and not self.exposed and _is_loopback(peer):
                self._limit(f"peer:{peer}", self.peer_rate)
                return Caller(None, peer)
            self.rejected["missing"] += 1
            why = (
                "admin routes always need an admin key"
                if scope == "admin"
                else "this server listens beyond loopback"
                if self.exposed or not _is_loopback(peer)
                else "API keys exist on this appliance"
            )
            raise Unauthorized(
                f"an API key is required ({why}); {_HOW} — create one with "
                f"`appliance keys create --scope {'admin' if scope == 'admin' else 'predict'}`"
            )
        key = self._verify(token)
        if scope != "read" and not key.allows(scope):
            self.rejected["scope"] += 1
            raise Forbidden(
                f"API key '{key.id}' has scopes {', '.join(key.scopes)}, not {scope}; "
                f"create a key with `appliance keys create --scope {scope}`"
            )
        self._limit(f"key:{key.id}", key.rate_per_second)
        return Caller(key.id, peer)

    def _verify(self, token: str) -> ApiKey:
        parsed = parse_token(token)
        key = self._keys.get(parsed[0]) if parsed else None
        if parsed is None or key is None or not secret_matches(key, parsed[1]):
            self.rejected["invalid"] += 1
            raise Unauthorized(f"the API key is not valid; {_HOW} with a key from `appliance keys create`")
        if not key.active:
            self.rejected["revoked"] += 1
            raise Unauthorized(f"API key '{key.id}' was revoked; ask an admin for a new one")
        return key

    def _limit(self, who: str, rate: float) -> None:
        wait = self.limiter.take(who, rate)
        if wait > 0:
            self.rejected["rate"] += 1
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"rate limit of {rate:g} requests per second exceeded; retry in {retry} s", retry_after=retry
            )


class RateLimiter:
    """Token buckets: each caller may burst up to one second's worth, refilled continuously."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}

    def take(self, who: str, rate: float) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        now = self.clock()
        burst = max(1.0, rate)
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self._buckets[who] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0.0
        bucket[0] = tokens
        return (1 - tokens) / rate

    def _forget_idle(self, now: float) -> None:
        # A bucket idle for a minute is full again; forgetting it changes nothing for its caller.
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < 60}


@lru_cache(maxsize=1024)
def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
