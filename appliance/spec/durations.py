"""Durations as the spec and the contract write them: '90s', '30m', '24h', '7d'."""

from __future__ import annotations

import re
from datetime import timedelta

from appliance.errors import InvalidInput
from appliance.toml_file import FieldError


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '24h' or '7d' as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise InvalidInput(f"duration {text!r} is not like '30m', '24h' or '7d'")
    value, unit = float(match[1]), match[2]
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: value})


def check_duration(field: str, text: str) -> None:
    """Refuse a duration field that does not parse, naming the field (for a Struct's ``__post_init__``)."""
    try:
        parse_duration(text)
    except InvalidInput as e:
        raise FieldError(field, str(e)) from None
