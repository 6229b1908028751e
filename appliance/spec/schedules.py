"""Schedules as the spec writes them: ``every 10m`` (30s, 10m, 1h, 1d) or a five-field crontab line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from appliance.errors import InvalidInput

_EVERY = re.compile(r"every\s+([1-9]\d*)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(text: str) -> int | None:
    """Seconds between runs of an ``every N<unit>`` schedule; None for a crontab line."""
    match = _EVERY.fullmatch(text.strip())
    return int(match[1]) * _UNIT_SECONDS[match[2]] if match else None


def trigger(text: str, start: datetime | None = None) -> BaseTrigger:
    """The APScheduler trigger of a schedule (in UTC); a malformed one is InvalidInput."""
    seconds = interval_seconds(text)
    if seconds is not None:
        return IntervalTrigger(seconds=seconds, start_date=start, timezone=UTC)
    try:
        return CronTrigger.from_crontab(text.strip(), timezone=UTC)
    except ValueError as e:
        raise InvalidInput(
            f"schedule {text!r} is neither 'every N[s|m|h|d]' nor a five-field crontab line ({e})"
        ) from None


def next_run(text: str, last_start: float | None, now: datetime | None = None) -> datetime | None:
    """When a schedule fires next: an interval counts from the last run's start (now if none)."""
    now = now or datetime.now(UTC)
    seconds = interval_seconds(text)
    if seconds is not None:
        if last_start is None:
            return now
        return max(now, datetime.fromtimestamp(last_start, UTC) + timedelta(seconds=seconds))
    return trigger(text).get_next_fire_time(None, now)
