"""Schema history of metadata.db: models, data snapshots, runs, versions, aliases, audit log."""

from storage.database import Migration

MIGRATIONS = [
    Migration(
        1,
        "registry, snapshots and runs",
        """
CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    spec_path   TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE snapshots (
    hash            TEXT PRIMARY KEY,
    model           TEXT NOT NULL REFERENCES models(name),
    path            TEXT NOT NULL,
    rows            INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    source          TEXT NOT NULL,
    min_event_time  TEXT,
    max_event_time  TEXT,
    schema_json     TEXT NOT NULL,
    parent          TEXT REFERENCES snapshots(hash),
    created_at      REAL NOT NULL
);

CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    model               TEXT NOT NULL REFERENCES models(name),
    kind                TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at          REAL NOT NULL,
    ended_at            REAL,
    params_json         TEXT NOT NULL DEFAULT '{}',
    metrics_json        TEXT NOT NULL DEFAULT '{}',
    data_snapshots_json TEXT NOT NULL DEFAULT '[]',
    code_version        TEXT,
    error               TEXT
);
CREATE INDEX runs_by_model ON runs(model, started_at);

CREATE TABLE model_versions (
    model               TEXT NOT NULL REFERENCES models(name),
    version             INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('registered', 'rejected')),
    artifact_sha256     TEXT NOT NULL,
    feature_schema_json TEXT NOT NULL,
    metrics_json        TEXT NOT NULL,
    params_json         TEXT NOT NULL,
    gate_report_json    TEXT NOT NULL,
    data_version        TEXT NOT NULL,
    code_version        TEXT NOT NULL,
    run_id              TEXT NOT NULL REFERENCES runs(id),
    created_at          REAL NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TRIGGER model_versions_no_update BEFORE UPDATE ON model_versions
BEGIN SELECT RAISE(ABORT, 'model versions are immutable'); END;
CREATE TRIGGER model_versions_no_delete BEFORE DELETE ON model_versions
BEGIN SELECT RAISE(ABORT, 'model versions are immutable'); END;

CREATE TABLE aliases (
    model       TEXT NOT NULL,
    alias       TEXT NOT NULL CHECK (alias IN ('production', 'candidate')),
    version     INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);

CREATE TABLE promotions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model           TEXT NOT NULL,
    version         INTEGER NOT NULL,
    promoted_at     REAL NOT NULL,
    rolled_back_at  REAL,
    FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);
CREATE INDEX promotions_by_model ON promotions(model, id);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    model       TEXT,
    version     INTEGER,
    detail_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
""",
    ),
    Migration(
        2,
        "ingest history with quarantine files",
        """
CREATE TABLE ingests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model           TEXT NOT NULL REFERENCES models(name),
    source          TEXT NOT NULL,
    at              REAL NOT NULL,
    rows_read       INTEGER NOT NULL,
    accepted        INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    snapshot        TEXT NOT NULL REFERENCES snapshots(hash),
    quarantine_path TEXT,               -- the batch's rejected rows with reasons, relative to offline/
    warnings_json   TEXT NOT NULL DEFAULT '[]',
    CHECK (rows_read = accepted + quarantined)
);
CREATE INDEX ingests_by_model ON ingests(model, at);
""",
    ),
    Migration(
        3,
        "pipeline stages and the worker of a run",
        """
ALTER TABLE runs ADD COLUMN worker_pid INTEGER;
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

CREATE TABLE run_stages (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    stage        TEXT NOT NULL,
    position     INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at   REAL NOT NULL,
    ended_at     REAL,
    error        TEXT,
    outputs_json TEXT NOT NULL DEFAULT '{}',
    attempts     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, stage)
);
""",
    ),
]

MIGRATIONS.append(
    Migration(
        4,
        "api keys and deployments",
        """
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    secret_sha256   TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    rate_per_second REAL NOT NULL CHECK (rate_per_second > 0),
    created_at      REAL NOT NULL,
    revoked_at      REAL
);

CREATE TABLE deployments (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    model               TEXT NOT NULL REFERENCES models(name),
    strategy            TEXT NOT NULL CHECK (strategy IN ('blue-green', 'canary', 'shadow', 'ab')),
    candidate_version   INTEGER NOT NULL,
    baseline_version    INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('running', 'completed', 'aborted', 'rolled_back')),
    step                INTEGER NOT NULL DEFAULT 0,
    traffic_percent     REAL NOT NULL,
    split_key           TEXT,
    step_started_at     REAL NOT NULL,
    started_at          REAL NOT NULL,
    ended_at            REAL,
    reason              TEXT NOT NULL DEFAULT '',
    FOREIGN KEY (model, candidate_version) REFERENCES model_versions(model, version),
    FOREIGN KEY (model, baseline_version) REFERENCES model_versions(model, version)
);
CREATE UNIQUE INDEX one_running_deployment_per_model ON deployments(model) WHERE status = 'running';
""",
    )
)

MIGRATIONS.append(
    Migration(
        5,
        "alerts and the actions they took",
        """
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    rule            TEXT NOT NULL,
    model           TEXT NOT NULL REFERENCES models(name),
    target          TEXT NOT NULL,          -- the feature or segment, '*' for the whole model
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    action          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    message         TEXT NOT NULL,
    value           REAL,
    threshold       REAL NOT NULL,
    window_start    TEXT,
    window_end      TEXT,
    count           INTEGER NOT NULL DEFAULT 1,
    first_seen      REAL NOT NULL,
    last_seen       REAL NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    resolved_by     TEXT,
    resolved_at     REAL
);
CREATE UNIQUE INDEX one_unresolved_alert ON alerts(rule, model, target) WHERE status != 'resolved';
CREATE INDEX alerts_by_model ON alerts(model, id);

CREATE TABLE alert_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    INTEGER NOT NULL REFERENCES alerts(id),
    action      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at  REAL NOT NULL,
    ended_at    REAL,
    detail_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_actions_by_alert ON alert_actions(alert_id, id);
""",
    )
)

# A snapshot belongs to one model: two models over the same file each hold a row for the same hash
# (the Parquet file itself is shared). The tables are rebuilt (SQLite cannot change a primary key);
# foreign keys are checked at commit, once the new tables stand. An ingest recorded against another
# model's snapshot (the old global key) gets a row of its own model, so its lineage is whole.
MIGRATIONS.append(
    Migration(
        6,
        "snapshots keyed by model and hash",
        """
PRAGMA defer_foreign_keys = ON;

CREATE TABLE snapshots_v6 (
    hash            TEXT NOT NULL,
    model           TEXT NOT NULL REFERENCES models(name),
    path            TEXT NOT NULL,
    rows            INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    source          TEXT NOT NULL,
    min_event_time  TEXT,
    max_event_time  TEXT,
    schema_json     TEXT NOT NULL,
    parent          TEXT,
    created_at      REAL NOT NULL,
    PRIMARY KEY (model, hash),
    FOREIGN KEY (model, parent) REFERENCES snapshots_v6(model, hash)
);
INSERT INTO snapshots_v6 (hash, model, path, rows, quarantined, source, min_event_time, max_event_time,
                          schema_json, parent, created_at)
SELECT hash, model, path, rows, quarantined, source, min_event_time, max_event_time, schema_json, parent,
       created_at
FROM snapshots ORDER BY rowid;
INSERT INTO snapshots_v6 (hash, model, path, rows, quarantined, source, min_event_time, max_event_time,
                          schema_json, parent, created_at)
SELECT s.hash, i.model, s.path, s.rows, i.quarantined, i.source, s.min_event_time, s.max_event_time,
       s.schema_json,
       (SELECT h FROM (SELECT p.hash AS h, p.created_at AS t FROM snapshots p
                       WHERE p.model = i.model AND p.created_at <= i.at
                       UNION ALL SELECT j.snapshot, j.at FROM ingests j
                       WHERE j.model = i.model AND j.id < i.id AND j.snapshot != i.snapshot)
        ORDER BY t DESC LIMIT 1),
       i.at
FROM ingests i JOIN snapshots s ON s.hash = i.snapshot
WHERE s.model != i.model
  AND i.id = (SELECT min(j.id) FROM ingests j WHERE j.model = i.model AND j.snapshot = i.snapshot)
  AND NOT EXISTS (SELECT 1 FROM snapshots o WHERE o.model = i.model AND o.hash = i.snapshot)
ORDER BY i.id;

CREATE TABLE ingests_v6 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    model           TEXT NOT NULL REFERENCES models(name),
    source          TEXT NOT NULL,
    at              REAL NOT NULL,
    rows_read       INTEGER NOT NULL,
    accepted        INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    snapshot        TEXT NOT NULL,
    quarantine_path TEXT,               -- the batch's rejected rows with reasons, relative to offline/
    warnings_json   TEXT NOT NULL DEFAULT '[]',
    CHECK (rows_read = accepted + quarantined),
    FOREIGN KEY (model, snapshot) REFERENCES snapshots_v6(model, hash)
);
INSERT INTO ingests_v6 (id, model, source, at, rows_read, accepted, quarantined, snapshot, quarantine_path,
                        warnings_json)
SELECT id, model, source, at, rows_read, accepted, quarantined, snapshot, quarantine_path, warnings_json
FROM ingests ORDER BY id;

DROP TABLE ingests;
DROP TABLE snapshots;
ALTER TABLE snapshots_v6 RENAME TO snapshots;
ALTER TABLE ingests_v6 RENAME TO ingests;
CREATE INDEX ingests_by_model ON ingests(model, at);
CREATE INDEX snapshots_by_hash ON snapshots(hash);
""",
    )
)

# A retrain with nothing new to learn from ends after its ingest as 'skipped', saying why in `outcome`.
# SQLite cannot change a CHECK, so the table is rebuilt under its own name: its rows are set aside, the old
# table dropped (deferred, the versions and stages that name its runs count as violations)…
MIGRATIONS.append(
    Migration(
        7,
        "runs that skipped, and what a run came to",
        """
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE runs_v6 AS SELECT * FROM runs;
DROP TABLE runs;
CREATE TABLE runs (
    id                  TEXT PRIMARY KEY,
    model               TEXT NOT NULL REFERENCES models(name),
    kind                TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at          REAL NOT NULL,
    ended_at            REAL,
    params_json         TEXT NOT NULL DEFAULT '{}',
    metrics_json        TEXT NOT NULL DEFAULT '{}',
    data_snapshots_json TEXT NOT NULL DEFAULT '[]',
    code_version        TEXT,
    error               TEXT,
    worker_pid          INTEGER,
    attempts            INTEGER NOT NULL DEFAULT 1,
    outcome             TEXT                -- what a run that registered nothing came to (a skipped retrain: why)
);
-- … which the rows, put back under the same name, settle before the transaction commits.
INSERT INTO runs (id, model, kind, status, started_at, ended_at, params_json, metrics_json, data_snapshots_json,
                  code_version, error, worker_pid, attempts)
SELECT id, model, kind, status, started_at, ended_at, params_json, metrics_json, data_snapshots_json,
       code_version, error, worker_pid, attempts
FROM runs_v6 ORDER BY rowid;
DROP TABLE runs_v6;
CREATE INDEX runs_by_model ON runs(model, started_at);
""",
    )
)
