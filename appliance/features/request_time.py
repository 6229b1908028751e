"""A request's event time: ISO 8601 text to epoch microseconds, as the online store keeps time.

Its own module: the prediction log's writer process reads event times too, and imports nothing heavy.
"""

from __future__ import annotations

from datetime import datetime, timezone

from appliance.errors import InvalidInput


def request_time(value: object, name: str, where: str) -> float:
    """A request's event time (ISO 8601) in epoch microseconds; InvalidInput otherwise."""
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            return float(_to_micros(moment))
    raise InvalidInput(f"{where}'{name}' must be an ISO 8601 time like '2026-10-16T09:30:00Z', or left out "
                       "for now")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
