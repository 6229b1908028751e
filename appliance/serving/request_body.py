"""Request bodies as JSON: a body msgspec cannot read is a 422 that says why and what to send instead.

msgspec refuses invalid UTF-8 and lone UTF-16 surrogate escapes (text no SQLite row could hold) as
malformed; nesting past its depth raises RecursionError, which is the client's doing too."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from appliance.errors import InvalidInput

T = TypeVar("T")


def decode_body(raw: bytes, decode: Callable[[bytes], T], hint: str) -> T:
    """``decode(raw)``; InvalidInput ending with ``hint`` if the body is not JSON, not of the expected
    shape, or nested past the decoder's depth."""
    try:
        value = decode(raw)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"request body: {e}; {hint}") from None
    except msgspec.DecodeError as e:
        raise InvalidInput(f"request body is not valid JSON ({e}); {hint}") from None
    except RecursionError:
        raise InvalidInput(f"request body is nested too deeply; {hint}") from None
    return value
