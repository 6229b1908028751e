"""An entity's tail: the per-time partials of its events within the longest aggregation window of
its newest one — all the online row needs to move forward by an event, with the feature table's
semantics (``feature_table``: windows ``[s - window, s]`` with both edges inclusive, partials per
distinct time, counts as integers, values as doubles).

A tail is a sorted list of points ``[t, n, n_0, s_0, lo_0, hi_0, n_1, ...]`` (``t`` in epoch
microseconds, then the partials of ``partials_sql`` per aggregated column), stored JSON-encoded
beside the online row.
"""

from __future__ import annotations

import bisect
from functools import partial
from operator import is_not

import msgspec
import polars as pl

from appliance.features.feature_table import aggregated_columns, connect, partials_sql, window_micros
from appliance.spec import FeaturesSection

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[list[float | int | None]]).decode
EMPTY = b"[]"
_present = partial(is_not, None)


class TailPlan:
    """How one feature definition's aggregations read a tail."""

    def __init__(self, features: FeaturesSection):
        self.columns = aggregated_columns(features)
        self.windows = sorted({window_micros(a.window) for a in features.aggregations})
        self.horizon = self.windows[-1] if self.windows else 0  # what the newest event's row can see
        slot = {c: 2 + 4 * i for i, c in enumerate(self.columns)}  # where a column's n_i sits in a point
        self.aggregations = [(a.name, a.function, None if a.column is None else slot[a.column],
                              self.windows.index(window_micros(a.window))) for a in features.aggregations]

    def add(self, points: list[list], events: list[tuple[int, list[float | None]]]) -> list[list]:
        """The tail with events (time, one value per aggregated column; None: missing) merged in,
        trimmed to the horizon of its newest event."""
        times = [p[0] for p in points]
        for t, values in events:
            i = bisect.bisect_left(times, t)
            if i == len(times) or times[i] != t:
                times.insert(i, t)
                points.insert(i, [t, 0, *([0, None, None, None] * len(self.columns))])
            point = points[i]
            point[1] += 1
            for j, v in enumerate(values):
                if v is not None:
                    at = 2 + 4 * j
                    point[at] += 1
                    point[at + 1] = v if point[at + 1] is None else point[at + 1] + v
                    point[at + 2] = v if point[at + 2] is None else min(point[at + 2], v)
                    point[at + 3] = v if point[at + 3] is None else max(point[at + 3], v)
        if not points:
            return points
        start = bisect.bisect_left(times, times[-1] - self.horizon)
        return points[start:]

    def aggregate(self, points: list[list]) -> dict[str, float | int | None]:
        """Each aggregation over the tail's window ending at its newest point (a non-empty tail)."""
        # Column-wise, so that the sums, minima and maxima over each window run in C.
        columns = list(zip(*points))
        times = columns[0]
        newest = times[-1]
        sums = []  # per window: (n, then n_i, s_i, lo_i, hi_i per column) over the points inside it
        for window in self.windows:
            start = bisect.bisect_left(times, newest - window)
            total = [sum(columns[1][start:])]
            for at in range(2, len(columns), 4):
                n = sum(columns[at][start:])
                if n:
                    total += [n, sum(filter(_present, columns[at + 1][start:])),
                              min(filter(_present, columns[at + 2][start:])),
                              max(filter(_present, columns[at + 3][start:]))]
                else:
                    total += [0, None, None, None]
            sums.append(total)
        out = {}
        for name, function, slot, w in self.aggregations:
            total = sums[w]
            if slot is None:
                out[name] = total[0]
                continue
            n, s, lo, hi = total[slot - 1:slot + 3]
            out[name] = {"count": n, "sum": s, "min": lo, "max": hi,
                         "mean": s / n if n else None}[function]
        return out


def encode(points: list[list]) -> bytes:
    """A tail as stored."""
    return _encode(points)


def decode(blob: bytes) -> list[list]:
    """A stored tail."""
    return _decode(blob)


def latest_tails(features: FeaturesSection, history: pl.DataFrame) -> dict[str, bytes]:
    """Each entity's stored tail, computed from a frame of events."""
    horizon = TailPlan(features).horizon
    sql = (f"SELECT k::VARCHAR, epoch_us(t), * EXCLUDE (k, t, newest) FROM ("
           f"SELECT *, max(t) OVER (PARTITION BY k) AS newest FROM ({partials_sql(features, 'history')})) "
           f"WHERE t >= newest - INTERVAL {horizon} MICROSECONDS ORDER BY k, t")
    con = connect()
    con.register("history", history)
    try:
        rows = con.sql(sql).fetchall()
    finally:
        con.close()
    tails: dict[str, list] = {}
    for entity, *point in rows:
        tails.setdefault(entity, []).append(point)
    return {entity: encode(points) for entity, points in tails.items()}
