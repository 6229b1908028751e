"""Schema history of monitoring.db: scheduled job runs, monitoring results as time series, what
each event-time window looked like when it was last computed, and each window's input distributions
beside the reference's.

Its own file: the monitor job writes thousands of result rows per run and must never hold the lock
that serving, feedback or a promotion needs.
"""

from storage.database import Migration

MIGRATIONS = [
    Migration(
        1,
        "job runs, results, window state",
        """
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT NOT NULL,
    model       TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error       TEXT,
    summary_json TEXT NOT NULL DEFAULT '{}',
    pid         INTEGER NOT NULL,
    trigger     TEXT NOT NULL
);
CREATE INDEX job_runs_by_job ON job_runs(job, model, started_at);

CREATE TABLE results (
    model        TEXT NOT NULL,
    version      INTEGER NOT NULL,
    window_start TEXT NOT NULL,      -- ISO 8601 UTC; for machine and pipeline, the time of the run
    window_end   TEXT NOT NULL,
    "check"      TEXT NOT NULL,      -- quality, drift, performance, estimated, serving, machine, pipeline
    feature      TEXT NOT NULL,      -- a feature, 'prediction', '*' (all rows) or 'COLUMN=VALUE' (a segment)
    method       TEXT NOT NULL,
    value        REAL,
    threshold    REAL,
    rows         INTEGER NOT NULL,
    alert        INTEGER NOT NULL,
    computed_at  REAL NOT NULL,
    PRIMARY KEY (model, version, window_start, "check", feature, method)
);
CREATE INDEX results_by_check ON results(model, "check", window_start);
CREATE INDEX results_by_computed ON results(model, computed_at);

CREATE TABLE windows (
    model            TEXT NOT NULL,
    version          INTEGER NOT NULL,
    window_start     TEXT NOT NULL,
    rows             INTEGER NOT NULL,
    last_received_at REAL NOT NULL,  -- newest prediction in the window: a change means new rows
    labels           INTEGER NOT NULL,
    last_label_at    REAL NOT NULL,  -- newest feedback on the window's rows: a change means new labels
    computed_at      REAL NOT NULL,
    PRIMARY KEY (model, version, window_start)
);
""",
    ),
    Migration(
        2,
        "reference-vs-current distributions per window and feature",
        """
CREATE TABLE distributions (
    model          TEXT NOT NULL,
    version        INTEGER NOT NULL,
    window_start   TEXT NOT NULL,    -- ISO 8601 UTC, as in results: the data window the shares are of
    feature        TEXT NOT NULL,
    position       INTEGER NOT NULL, -- the feature's place in the model's features
    kind           TEXT NOT NULL CHECK (kind IN ('numeric', 'categorical')),
    labels         TEXT NOT NULL,    -- JSON list: bins at the reference's deciles, or its 12 most common
                                     -- values; then '(other)', '(missing)' where present
    reference      TEXT NOT NULL,    -- JSON list: the reference rows' share per label
    current        TEXT NOT NULL,    -- JSON list: the window rows' share per label (all 0 without rows)
    reference_rows INTEGER NOT NULL,
    current_rows   INTEGER NOT NULL,
    computed_at    REAL NOT NULL,
    PRIMARY KEY (model, version, window_start, feature)
);
CREATE INDEX distributions_by_window ON distributions(window_start);
""",
    ),
]
