"""Event-time windows and the tidy frame every monitoring check reports in.

Windows come from each row's event time, never from the clock: a replay of last month is
windowed exactly as last month was. A window with no rows is still a window (volume checks
must see it), so windows run contiguously from the first to the last.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from appliance.errors import InvalidInput

MICROSECOND = timedelta(microseconds=1)
CHECK_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "feature": pl.String,
    "method": pl.String,
    "value": pl.Float64,
    "threshold": pl.Float64,
    "rows": pl.Int64,
    "alert": pl.Boolean,
}


class EventWindows:
    """The rows of a frame assigned to contiguous event-time windows of one length.

    Without ``start``/``end`` the windows span the frame's first to last event; with them,
    [start, end) and rows outside it belong to no window. Naive datetimes are taken as UTC.
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        event_time: str,
        every: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ):
        if event_time not in frame.columns:
            raise InvalidInput(f"the frame has no event-time column '{event_time}'")
        times = frame[event_time]
        if not isinstance(times.dtype, pl.Datetime):
            raise InvalidInput(f"'{event_time}' must be a datetime column, not {times.dtype}")
        if times.dtype.time_zone is None:
            times = times.dt.replace_time_zone("UTC")
        times = times.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        truncated = times.dt.truncate(every)
        first = _utc(start) if start else truncated.min()
        last = _utc(end) - MICROSECOND if end else truncated.max()
        bounds = pl.Series([first, last], dtype=pl.Datetime("us", "UTC")).dt.truncate(every)
        if bounds.null_count():
            self.starts = pl.Series("window_start", [], dtype=CHECK_SCHEMA["window_start"])
        else:
            self.starts = pl.datetime_range(
                bounds[0], bounds[1], every, eager=True, time_unit="us", time_zone="UTC"
            ).alias("window_start")
        starts = self.starts.to_physical().to_numpy()
        at = truncated.to_physical().fill_null(0).to_numpy()
        known = truncated.is_not_null().to_numpy()
        codes = np.searchsorted(starts, np.where(known, at, 0), side="right") - 1
        inside = known & (codes >= 0) & (at <= (starts[-1] if starts.size else -1))
        self.code = np.where(inside, codes, -1)  # -1: no event time, or outside the windows asked for
        self.every = every

    @property
    def count(self) -> int:
        return self.starts.len()

    def rows(self) -> np.ndarray:
        """Rows in each window."""
        return np.bincount(self.code[self.code >= 0], minlength=self.count)

    def select(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The values that fall in a window, with their window codes."""
        inside = self.code >= 0
        return values[inside], self.code[inside]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def checks(
    windows: EventWindows,
    feature: str,
    method: str,
    values: np.ndarray,
    threshold: float,
    rows: np.ndarray,
    min_rows: int,
    alert_below: bool = False,
) -> pl.DataFrame:
    """One row per window in the tidy check schema; windows under ``min_rows`` rows never alert."""
    values = np.asarray(values, dtype=np.float64)
    breached = values < threshold if alert_below else values > threshold
    alert = breached & ~np.isnan(values) & (rows >= min_rows)
    return pl.DataFrame(
        {
            "window_start": windows.starts,
            "feature": [feature] * windows.count,
            "method": [method] * windows.count,
            "value": values,
            "threshold": [float(threshold)] * windows.count,
            "rows": rows.astype(np.int64),
            "alert": alert,
        },
        schema=CHECK_SCHEMA,
    ).with_columns(pl.col("value").fill_nan(None))


def empty_checks() -> pl.DataFrame:
    """A check frame with no rows."""
    return pl.DataFrame(schema=CHECK_SCHEMA)
