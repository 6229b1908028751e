"""Schema history of tracking.db: experiment runs with their params, metric series, tags and artifacts.

A separate file from metadata.db because it is a separate write path: a training loop logging
thousands of metric points must never hold the lock a promotion or the serving refresh needs.
"""

from storage.database import Migration

MIGRATIONS = [
    Migration(
        1,
        "runs, params, metrics, tags, artifacts",
        """
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    model            TEXT NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    parent_id        TEXT REFERENCES runs(id),
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at       REAL NOT NULL,
    ended_at         REAL,
    code_version     TEXT,
    environment_json TEXT NOT NULL DEFAULT '{}',
    data_json        TEXT NOT NULL DEFAULT '[]',
    error            TEXT
);
CREATE INDEX runs_by_model ON runs(model, started_at);
CREATE INDEX runs_by_parent ON runs(parent_id, name);

CREATE TABLE params (
    run_id     TEXT NOT NULL REFERENCES runs(id),
    key        TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name   TEXT NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL,             -- NULL stores NaN (SQLite has no NaN)
    at     REAL NOT NULL
);
CREATE INDEX metrics_by_run ON metrics(run_id, name, step);

CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name   TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);
""",
    ),
]

# A retrain with nothing new to learn from ends as 'skipped' (its reason is the run's `outcome` tag). SQLite
# cannot change a CHECK, so the table is rebuilt under its own name: its rows are set aside, the old table
# dropped (deferred, the rows that name its runs count as violations) and the rows put back, which settles them.
MIGRATIONS.append(
    Migration(
        2,
        "runs that skipped",
        """
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE runs_v1 AS SELECT * FROM runs;
DROP TABLE runs;
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    model            TEXT NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    parent_id        TEXT REFERENCES runs(id),
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at       REAL NOT NULL,
    ended_at         REAL,
    code_version     TEXT,
    environment_json TEXT NOT NULL DEFAULT '{}',
    data_json        TEXT NOT NULL DEFAULT '[]',
    error            TEXT
);
INSERT INTO runs SELECT * FROM runs_v1 ORDER BY rowid;
DROP TABLE runs_v1;
CREATE INDEX runs_by_model ON runs(model, started_at);
CREATE INDEX runs_by_parent ON runs(parent_id, name);
""",
    )
)
