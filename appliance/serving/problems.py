"""Errors as RFC 9457 problem documents, for the predict endpoint and the Litestar routes alike."""

from __future__ import annotations

import msgspec

from appliance.errors import ApplianceError, RateLimited, Unauthorized
from storage.errors import StorageError

MAX_BODY_BYTES = 4 * 1024 * 1024
BODY_TOO_LARGE = f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB; split the batch"
PROBLEM = "application/problem+json"
_encode = msgspec.json.Encoder().encode


def problem_body(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document."""
    return _encode({"type": "about:blank", "title": title, "status": status, "detail": detail})


def error_response(exc: ApplianceError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, ASGI headers and problem document of an appliance error (Retry-After on 429,
    WWW-Authenticate on 401)."""
    headers = [(b"content-type", PROBLEM.encode())]
    if isinstance(exc, RateLimited):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    elif isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="appliance"'))
    return exc.status, headers, problem_body(exc.status, exc.title, str(exc))


def failure_body(exc: Exception) -> bytes:
    """The 500 problem document of a failure that is not the caller's: a storage error says what
    failed; anything else points to the server's log (where the caller logs it)."""
    if isinstance(exc, StorageError):
        return problem_body(500, "Storage error", str(exc))
    return problem_body(500, "Internal error", "the appliance hit an unexpected error; see its log")
