"""Schema history of online.db: the latest feature values per entity, and what wrote them."""

from storage.database import Migration

MIGRATIONS = [
    Migration(1, "feature rows and materializations", """
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
"""),
    Migration(2, "each row's tail of recent events", """
-- The per-time partials of the entity's events within its longest aggregation window (JSON),
-- what the server needs to move the row forward by an answered request. NULL: written before
-- tails existed; such a row is left as it is until the next materialization.
ALTER TABLE feature_rows ADD COLUMN tail BLOB;
"""),
]
