"""The prediction log's cold tier: one Parquet file per UTC day, written before the hot rows go."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from storage.database import transaction
from storage.offline_store import move_into_place, parquet_being_written
from storage.prediction_log import PREDICTION_COLUMNS, PredictionStore

KEY = ["request_id", "position"]


class PredictionArchive:
    """``root/YYYY-MM-DD.parquet``: the predictions received that day, with their feedback."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def days(self) -> list[date]:
        """The archived days, oldest first."""
        if not self.root.exists():
            return []
        return sorted(date.fromisoformat(p.stem) for p in self.root.glob("????-??-??.parquet"))

    def path(self, day: date) -> Path:
        return self.root / f"{day.isoformat()}.parquet"

    def move_day(self, store: PredictionStore, day: date) -> int:
        """Move one day's hot rows here; crash-safe: the file is complete before any row is deleted."""
        start, end = _bounds(day)
        rows = store.conn.execute(
            f"SELECT {', '.join('p.' + c for c in PREDICTION_COLUMNS)}, f.outcome, f.received_at AS outcome_at "
            "FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id AND f.position = p.position "
            "WHERE p.received_at >= ? AND p.received_at < ?",
            (start, end),
        ).fetchall()
        if not rows:
            return 0
        columns = [*PREDICTION_COLUMNS, "outcome", "outcome_at"]
        frame = pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)
        target = self.path(day)
        if target.exists():  # an earlier move wrote the file but stopped before deleting the rows
            frame = pl.concat([pl.read_parquet(target), frame], how="diagonal_relaxed").unique(KEY, keep="last")
        with parquet_being_written(target.parent) as tmp:
            frame.sort("received_at", *KEY).write_parquet(tmp, compression="zstd")
            move_into_place(tmp, target)
        drop_day(store, day)
        return len(rows)

    def delete_before(self, day: date) -> list[date]:
        """Delete the files of days before ``day``; returns those days."""
        gone = [d for d in self.days() if d < day]
        for d in gone:
            self.path(d).unlink()
        return gone


def drop_day(store: PredictionStore, day: date) -> int:
    """Delete one day's hot rows, with their feedback and shadow scores, in one transaction."""
    start, end = _bounds(day)
    with transaction(store.conn):
        for table in ("feedback", "shadow_scores"):
            store.conn.execute(
                f"DELETE FROM {table} WHERE (request_id, position) IN (SELECT request_id, position "
                "FROM predictions WHERE received_at >= ? AND received_at < ?)",
                (start, end),
            )
        return store.conn.execute(
            "DELETE FROM predictions WHERE received_at >= ? AND received_at < ?", (start, end)
        ).rowcount


def hot_days(store: PredictionStore) -> list[date]:
    """The UTC days that have rows in the hot log, oldest first."""
    first, last = store.conn.execute("SELECT MIN(received_at), MAX(received_at) FROM predictions").fetchone()
    if first is None:
        return []
    day, end = _day(first), _day(last)
    days = []
    while day <= end:
        days.append(day)
        day += timedelta(days=1)
    return days


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _bounds(day: date) -> tuple[float, float]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return start, start + 86400.0
