"""The quarantine: every row a contract refused, kept as read with its reason, queryable with DuckDB."""

from __future__ import annotations

import sqlite3

import duckdb
import msgspec
import polars as pl

from appliance.data.identity import REPEAT_COUNTED, REPEAT_PATTERN
from storage.offline_store import OfflineStore


class QuarantineView(msgspec.Struct):
    rows: int
    by_reason: list[tuple[str, int]]  # most frequent first; a repeated id's value shown as …
    sample: pl.DataFrame  # the first rows, with ``reason`` and the ``quarantine_file`` they are in


def quarantine(
    conn: sqlite3.Connection, store: OfflineStore, model: str, limit: int = 20, reason: str | None = None
) -> QuarantineView:
    """A model's quarantined rows over all its ingests, optionally only those whose reason contains ``reason``."""
    paths = [
        r[0]
        for r in conn.execute(
            "SELECT quarantine_path FROM ingests WHERE model = ? AND quarantine_path IS NOT NULL "
            "GROUP BY quarantine_path ORDER BY min(id)",
            (model,),
        )
    ]
    if not paths:
        return QuarantineView(0, [], pl.DataFrame({"reason": []}, schema={"reason": pl.String}))
    con = duckdb.connect(":memory:")
    try:
        files = ", ".join("'" + str(store.root / p).replace("'", "''") + "'" for p in paths)
        con.execute(  # a view cannot take parameters; the paths are the store's own, quoted above
            "CREATE TEMP VIEW quarantined AS SELECT * EXCLUDE (filename), "
            "regexp_extract(filename, '[^/]+$') AS quarantine_file "
            f"FROM read_parquet([{files}], union_by_name = true, filename = true)"
        )
        where, args = ("WHERE reason LIKE '%' || ? || '%'", [reason]) if reason else ("", [])
        total = con.execute(f"SELECT count(*) FROM quarantined {where}", args).fetchone()[0]
        # A refused repeat's reason names its value; counted, its rows make one line per field and snapshot.
        counted = f"regexp_replace(reason, '{REPEAT_PATTERN}', '{REPEAT_COUNTED}')"
        by_reason = con.execute(
            f"SELECT {counted}, count(*) FROM quarantined {where} GROUP BY 1 ORDER BY 2 DESC, 1", args
        ).fetchall()
        sample = con.sql(f"SELECT * FROM quarantined {where} LIMIT ?", params=[*args, limit]).pl()
    finally:
        con.close()
    return QuarantineView(total, [(r, n) for r, n in by_reason], sample)
