"""Schema history of tracking.db: experiment runs with their params, metric series, tags and artifacts.

A separate file from metadata.db because it is a separate write path: a training loop logging
thousands of metric points must never hold the lock a promotion or the serving refresh needs.
"""

from storage.database import Migration

MIGRATIONS = [
    Migration(1, "runs, params, metrics, tags, artifacts", """
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
"""),
]
