"""Schema history of online.db: the latest feature values per entity, and what wrote them."""

from storage.database import Migration

MIGRATIONS = [
    Migration(
        1,
        "feature rows and materializations",
        """
CREATE TABLE feature_rows (
    namespace     TEXT NOT NULL,
    entity        TEXT NOT NULL,
    feature_time  INTEGER,          -- epoch microseconds of the entity's latest event; NULL: no history
    payload       BLOB NOT NULL,    -- JSON object of feature name -> value
    PRIMARY KEY (namespace, entity)
) WITHOUT ROWID;

CREATE TABLE materializations (
    namespace       TEXT PRIMARY KEY,
    rows            INTEGER NOT NULL,
    detail_json     TEXT NOT NULL DEFAULT '{}',
    written_at      REAL NOT NULL
);
""",
    ),
    Migration(
        2,
        "each entity's recent events, as per-time partials",
        """
-- The partials of an entity's events within its longest aggregation window, per distinct event time
-- t: col 0 holds the event count n; col i > 0 the i-th aggregated column's count of values n, sum s,
-- min lo and max hi. What a server moves the entity's row forward from with each answered request.
CREATE TABLE tail_points (
    namespace  TEXT NOT NULL,
    entity     TEXT NOT NULL,
    t          INTEGER NOT NULL,   -- epoch microseconds
    col        INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    s          REAL,
    lo         REAL,
    hi         REAL,
    PRIMARY KEY (namespace, entity, t, col)
) WITHOUT ROWID;

-- 1: the materialization wrote tail points. A namespace written before (0) keeps its rows as
-- materialized until the next materialization.
ALTER TABLE materializations ADD COLUMN tails INTEGER NOT NULL DEFAULT 0;
""",
    ),
]
