"""Request bodies as JSON: a body msgspec cannot read is a 422 that says why and what to send instead.

msgspec refuses invalid UTF-8 and lone UTF-16 surrogate escapes (text no SQLite row could hold) as
malformed; nesting past its depth raises RecursionError, which is the client's doing too. The predict
route calls ``decode_body`` itself; the Litestar routes declare a typed ``data`` and ``TypedRequest``
reads it the same way."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

from appliance.errors import InvalidInput

T = TypeVar("T")

# What a refused body of a Litestar route is told to send instead, unless a before_request hook knows better
# (feedback: in its model's terms).
SEE_SCHEMA = "see /schema for the expected fields"


def decode_body(raw: bytes, decode: Callable[[bytes], T], hint: str) -> T:
    """``decode(raw)``; InvalidInput ending with ``hint`` if the body is not JSON, not of the expected
    shape, or nested past the decoder's depth."""
    try:
        value = decode(raw)
    except msgspec.ValidationError as e:
        if str(e).startswith("Number out of range"):  # msgspec cannot say which field: a dict key is `[...]`
            raise InvalidInput(
                f"request body holds a number too large for a 64-bit float (past ±1.8e308, like 1e999); send "
                f"numbers within that range; {hint}"
            ) from None
        raise InvalidInput(f"request body: {e}; {hint}") from None
    except msgspec.DecodeError as e:
        raise InvalidInput(f"request body is not valid JSON ({e}); {hint}") from None
    except RecursionError:
        raise InvalidInput(f"request body is nested too deeply; {hint}") from None
    return value


class TypedRequest(Request[Any, Any, Any]):
    """A Litestar request whose JSON body is read as its handler's ``data`` type by ``decode_body``: strictly
    (``"2"`` is no version, as in the predict route), and refused with a 422 that says why.

    Litestar would decode the body to plain values, then convert them leniently, and answer 400 or 500
    (nesting past the decoder's depth) in its own words. Its ``json_extractor`` calls ``json()`` only on a
    body that is not empty; the Struct returned here passes Litestar's conversion as it is."""

    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        if field is None:
            return await super().json()
        return decode_body(await self.body(), _decoder(field.annotation), body_hint(self))


def body_hint(request: Request[Any, Any, Any]) -> str:
    """What a refused body of this request should have been (``request.state.body_hint``, else the schema)."""
    hint = request.state.get("body_hint")
    return hint if isinstance(hint, str) else SEE_SCHEMA


def validation_detail(exc: ValidationException, hint: str) -> str:
    """The detail of a 422 for Litestar's own validation error: each field it names, with its message. An
    empty body of a route that needs one is the usual case (``TypedRequest`` reads every other body)."""
    said = []
    body = False
    for error in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(error, dict):
            continue
        key, source, message = error.get("key"), error.get("source"), str(error.get("message", "invalid"))
        if key == "data" and source == "body":  # TypedRequest read any body there was: there was none
            body = True
            said.append("request body is empty")
        else:
            body = body or source == "body"
            said.append(f"{source or 'request'} field '{key}': {message}" if key else message)
    detail = "; ".join(said) or str(exc.detail)
    return f"{detail}; {hint}" if body else detail


@cache
def _decoder(annotation: Any) -> Callable[[bytes], Any]:
    return msgspec.json.Decoder(annotation).decode
