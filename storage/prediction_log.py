"""The prediction log: predictions.db, its own file because it is the hot write path.

Rows are appended in batches by one writer; feedback (late outcomes) is attached by request id. Each row
also keeps its event time as a number (``event_us``), indexed, so monitoring reads a window's rows, or
counts them, without reading the rest of the log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from storage.database import Migration, connect, transaction
from storage.errors import StorageError

MIGRATIONS = [
    Migration(
        1,
        "predictions, shadow scores and feedback",
        """
CREATE TABLE predictions (
    request_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    model           TEXT NOT NULL,
    version         INTEGER NOT NULL,
    arm             TEXT NOT NULL,
    deployment_id   INTEGER,
    received_at     REAL NOT NULL,
    event_time      TEXT,
    entity_key      TEXT,
    features_json   TEXT NOT NULL,
    probability     REAL,
    label           INTEGER,
    latency_ms      REAL NOT NULL,
    status          INTEGER NOT NULL,
    PRIMARY KEY (request_id, position)
) WITHOUT ROWID;
CREATE INDEX predictions_by_deployment ON predictions(deployment_id, arm, received_at);
CREATE INDEX predictions_by_model_time ON predictions(model, received_at);

CREATE TABLE shadow_scores (
    request_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    deployment_id   INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    probability     REAL,
    label           INTEGER,
    latency_ms      REAL NOT NULL,
    PRIMARY KEY (request_id, position)
) WITHOUT ROWID;
CREATE INDEX shadow_by_deployment ON shadow_scores(deployment_id);

CREATE TABLE feedback (
    request_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    outcome         REAL NOT NULL,
    received_at     REAL NOT NULL,
    PRIMARY KEY (request_id, position)
) WITHOUT ROWID;
""",
    ),
    Migration(
        2,
        "rows the log's full queue refused",
        """
CREATE TABLE log_overflow (
    model        TEXT NOT NULL,     -- '*': shadow scores, whose rows do not name their model
    recorded_at  REAL NOT NULL,
    rows         INTEGER NOT NULL
);
CREATE INDEX log_overflow_by_time ON log_overflow(recorded_at);
""",
    ),
    Migration(
        3,
        "outputs of multiclass and regression models",
        """
ALTER TABLE predictions ADD COLUMN value REAL;           -- regression: the predicted value
ALTER TABLE predictions ADD COLUMN probabilities TEXT;   -- multiclass: JSON list, one probability per class
ALTER TABLE shadow_scores ADD COLUMN value REAL;
ALTER TABLE shadow_scores ADD COLUMN probabilities TEXT;
""",
    ),
    Migration(
        4,
        "event times as numbers, indexed for monitoring's windows",
        """
ALTER TABLE predictions ADD COLUMN event_us INTEGER;   -- epoch microseconds: the request's event time, else its arrival
UPDATE predictions SET event_us = COALESCE(CAST(strftime('%s', event_time) AS INTEGER) * 1000000,
                                           CAST(received_at * 1000000 AS INTEGER));
CREATE INDEX predictions_by_event ON predictions(model, version, event_us);
""",
    ),
]

# What a row's output columns hold, by the model's task: binary: probability of class 1 and the label;
# multiclass: the chosen class's probability, its index (label) and every class's (probabilities);
# regression: the predicted value alone.
PREDICTION_COLUMNS = (
    "request_id",
    "position",
    "model",
    "version",
    "arm",
    "deployment_id",
    "received_at",
    "event_time",
    "entity_key",
    "features_json",
    "probability",
    "label",
    "latency_ms",
    "status",
    "value",
    "probabilities",
)
SHADOW_COLUMNS = (
    "request_id",
    "position",
    "deployment_id",
    "version",
    "probability",
    "label",
    "latency_ms",
    "value",
    "probabilities",
)

_INSERT_PREDICTIONS = (
    f"INSERT OR IGNORE INTO predictions ({', '.join(PREDICTION_COLUMNS)}, event_us) "
    f"VALUES ({', '.join('?' * (len(PREDICTION_COLUMNS) + 1))})"
)
_EVENT_TIME, _RECEIVED_AT = PREDICTION_COLUMNS.index("event_time"), PREDICTION_COLUMNS.index("received_at")
HOUR_US = 3_600 * 1_000_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INSERT_SHADOW = (
    f"INSERT OR IGNORE INTO shadow_scores ({', '.join(SHADOW_COLUMNS)}) VALUES ({', '.join('?' * len(SHADOW_COLUMNS))})"
)


class OutcomeConflict(StorageError):
    """Outcomes that differ from the ones already recorded for the same predictions, sent without replace:
    (request_id, position, recorded, sent) each."""

    def __init__(self, conflicts: list[tuple[str, int, float, float]]):
        request_id, position, recorded, sent = conflicts[0]
        super().__init__(
            f"request {request_id!r} position {position} already has outcome {recorded:g}, not {sent:g}"
            + (f" (and {len(conflicts) - 1} more like it)" if len(conflicts) > 1 else "")
        )
        self.conflicts = conflicts


class PredictionStore:
    """Reads and writes predictions.db; one instance per thread that uses it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = connect(self.path, MIGRATIONS)

    def append(self, predictions: Sequence[tuple], shadow: Sequence[tuple] = ()) -> None:
        """Write a batch of prediction rows (PREDICTION_COLUMNS order) and shadow rows in one transaction."""
        with transaction(self.conn):
            if predictions:
                self.conn.executemany(
                    _INSERT_PREDICTIONS, [(*row, event_us(row[_EVENT_TIME], row[_RECEIVED_AT])) for row in predictions]
                )
            if shadow:
                self.conn.executemany(_INSERT_SHADOW, shadow)

    def attach_feedback(
        self, model: str, outcomes: Iterable[tuple[str, int, float]], replace: bool = False
    ) -> list[tuple[str, int]]:
        """Record outcomes (request_id, position, outcome) of a model's predictions; returns the unknown ones.

        An outcome already recorded is kept when sent again (a retry); a different one replaces it only with
        ``replace`` (a label correction), else OutcomeConflict names them and none of the batch is recorded:
        two sources disagreeing on a label must not settle it by which came last."""
        unknown, conflicts = [], []
        now = time.time()
        with transaction(self.conn):
            for request_id, position, outcome in outcomes:
                found = self.conn.execute(
                    "SELECT f.outcome FROM predictions p LEFT JOIN feedback f "
                    "ON f.request_id = p.request_id AND f.position = p.position "
                    "WHERE p.request_id = ? AND p.position = ? AND p.model = ?",
                    (request_id, position, model),
                ).fetchone()
                if found is None:
                    unknown.append((request_id, position))
                elif found[0] is None:
                    self.conn.execute(
                        "INSERT INTO feedback (request_id, position, outcome, received_at) VALUES (?, ?, ?, ?)",
                        (request_id, position, outcome, now),
                    )
                elif found[0] != outcome:
                    if not replace:
                        conflicts.append((request_id, position, found[0], outcome))
                        continue
                    self.conn.execute(
                        "UPDATE feedback SET outcome = ?, received_at = ? WHERE request_id = ? AND position = ?",
                        (outcome, now, request_id, position),
                    )
            if conflicts:
                raise OutcomeConflict(conflicts)  # the transaction rolls the whole batch back
        return unknown

    def arm_sample(self, deployment_id: int, arm: str, since: float, limit: int) -> list[sqlite3.Row]:
        """The latest rows (probability, latency_ms, status, label, value, probabilities, position) of one arm
        of a deployment since a time; position 0 is a request's first record."""
        return self.conn.execute(
            "SELECT probability, latency_ms, status, label, value, probabilities, position FROM predictions "
            "WHERE deployment_id = ? AND arm = ? AND received_at >= ? ORDER BY received_at DESC LIMIT ?",
            (deployment_id, arm, since, limit),
        ).fetchall()

    def arm_count(self, deployment_id: int, arm: str, since: float) -> int:
        """How many rows one arm of a deployment has logged since a time."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM predictions WHERE deployment_id = ? AND arm = ? AND received_at >= ?",
            (deployment_id, arm, since),
        ).fetchone()[0]

    def outcomes_by_arm(self, deployment_id: int) -> list[sqlite3.Row]:
        """(arm, outcome, probability, label, value) for every prediction of a deployment that has feedback."""
        return self.conn.execute(
            "SELECT p.arm, f.outcome, p.probability, p.label, p.value FROM predictions p JOIN feedback f "
            "ON f.request_id = p.request_id AND f.position = p.position WHERE p.deployment_id = ?",
            (deployment_id,),
        ).fetchall()

    def predictions_by_arm(self, deployment_id: int) -> dict[str, int]:
        """Successful predictions per arm of a deployment."""
        rows = self.conn.execute(
            "SELECT arm, COUNT(*) FROM predictions WHERE deployment_id = ? AND status = 200 GROUP BY arm",
            (deployment_id,),
        )
        return {r[0]: r[1] for r in rows}

    def shadow_pairs(self, deployment_id: int, limit: int = 100_000) -> list[sqlite3.Row]:
        """Production and shadow scores and latencies of the same rows, newest first."""
        return self.conn.execute(
            "SELECT p.probability AS served, p.label AS served_label, p.latency_ms AS served_ms, "
            "s.probability AS shadow, s.label AS shadow_label, s.latency_ms AS shadow_ms, "
            "p.value AS served_value, s.value AS shadow_value, p.probabilities AS served_probabilities, "
            "s.probabilities AS shadow_probabilities "
            "FROM shadow_scores s JOIN predictions p ON p.request_id = s.request_id AND p.position = s.position "
            "WHERE s.deployment_id = ? ORDER BY p.received_at DESC LIMIT ?",
            (deployment_id, limit),
        ).fetchall()

    def recent(self, model: str, since: float, limit: int) -> list[sqlite3.Row]:
        """The latest rows (latency_ms, status, received_at) a model logged since a time, newest first."""
        return self.conn.execute(
            "SELECT latency_ms, status, received_at FROM predictions WHERE model = ? AND received_at >= ? "
            "ORDER BY received_at DESC LIMIT ?",
            (model, since, limit),
        ).fetchall()

    def logged_rows(
        self, model: str, version: int, since_us: int | None = None, until_us: int | None = None, chunk: int = 50_000
    ) -> Iterator[list[tuple]]:
        """The rows one version of a model served with an event time in [since_us, until_us) (None: unbounded),
        with their feedback, in event-time order, ``chunk`` rows at a time: (request_id, position, received_at,
        event_us, entity_key, features_json, probability, latency_ms, status, outcome, outcome_received_at,
        label, value, probabilities)."""
        cursor = self.conn.execute(
            "SELECT p.request_id, p.position, p.received_at, p.event_us, p.entity_key, p.features_json, "
            "p.probability, p.latency_ms, p.status, f.outcome, f.received_at, p.label, p.value, p.probabilities "
            "FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id AND f.position = p.position "
            "WHERE p.model = ? AND p.version = ? AND p.event_us >= ? AND p.event_us < ? "
            "ORDER BY p.event_us, p.request_id, p.position",
            (
                model,
                version,
                _INT64_MIN if since_us is None else since_us,
                _INT64_MAX if until_us is None else until_us,
            ),
        )
        while rows := cursor.fetchmany(chunk):
            yield rows

    def logged_hours(self, model: str, version: int, since_us: int, until_us: int) -> list[tuple]:
        """Per event-time hour (epoch µs of its start, >= 0) holding rows of one version in [since_us, until_us):
        (hour, rows, newest arrival, labelled rows, newest label's arrival or None), counted in SQL."""
        return self.conn.execute(
            "SELECT p.event_us / ? * ? AS hour, COUNT(*), MAX(p.received_at), COUNT(f.outcome), MAX(f.received_at) "
            "FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id AND f.position = p.position "
            "WHERE p.model = ? AND p.version = ? AND p.event_us >= ? AND p.event_us < ? GROUP BY hour ORDER BY hour",
            (HOUR_US, HOUR_US, model, version, max(since_us, 0), until_us),
        ).fetchall()

    def count(self, model: str | None = None) -> int:
        """Logged prediction rows, for one model or all."""
        if model is None:
            return self.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM predictions WHERE model = ?", (model,)).fetchone()[0]

    def labelled(self, model: str, since: float = 0.0) -> list[sqlite3.Row]:
        """Logged predictions of a model whose outcome arrived after ``since`` (epoch seconds):
        request_id, position, predicted_at (when the request arrived), features_json, outcome,
        received_at (of the outcome)."""
        return self.conn.execute(
            "SELECT p.request_id, p.position, p.received_at AS predicted_at, p.features_json, f.outcome, "
            "f.received_at FROM predictions p "
            "JOIN feedback f USING (request_id, position) WHERE p.model = ? AND f.received_at > ? "
            "ORDER BY p.event_time",
            (model, since),
        ).fetchall()

    def record_overflow(self, refused: dict[str, int]) -> None:
        """Record how many rows of each model the log's full queue refused since its last record."""
        now = time.time()
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT INTO log_overflow (model, recorded_at, rows) VALUES (?, ?, ?)",
                [(model, now, rows) for model, rows in refused.items()],
            )

    def overflow_between(self, model: str, since: float, until: float) -> int:
        """Rows of a model (or of no named model) the log refused in (since, until], epoch seconds."""
        return self.conn.execute(
            "SELECT COALESCE(SUM(rows), 0) FROM log_overflow WHERE model IN (?, '*') "
            "AND recorded_at > ? AND recorded_at <= ?",
            (model, since, until),
        ).fetchone()[0]

    def has_request(self, request_id: str) -> bool:
        """Whether any row of a request was logged."""
        return (
            self.conn.execute("SELECT 1 FROM predictions WHERE request_id = ? LIMIT 1", (request_id,)).fetchone()
            is not None
        )

    def has_row(self, request_id: str, position: int, shadow: bool = False) -> bool:
        """Whether one row of a request (a shadow score's, if ``shadow``) was logged."""
        table = "shadow_scores" if shadow else "predictions"
        return (
            self.conn.execute(
                f"SELECT 1 FROM {table} WHERE request_id = ? AND position = ?", (request_id, position)
            ).fetchone()
            is not None
        )

    def close(self) -> None:
        self.conn.close()


def event_us(event_time: str | None, received_at: float) -> int:
    """A row's event time in epoch µs: its ISO 8601 text (no zone: UTC), else its arrival (so monitoring
    windows a request that sent no time, or one no longer readable, by when it came)."""
    if event_time is not None:
        try:
            moment = datetime.fromisoformat(event_time)
        except (TypeError, ValueError):
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            delta = moment - _EPOCH
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return round(received_at * 1_000_000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
