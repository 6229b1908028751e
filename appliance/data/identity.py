"""Row identity across batches: a value of a contract's unique field names one row in every batch of a model.

At ingest, an accepted row whose unique value a snapshot of the model already holds is a repeat. A repeat
with the same values is the same event sent again (an export overlapping the last one, a folder read again):
it is accepted, and read together with the earlier snapshot it counts once. A repeat with other values is a
new version of the row, and the field's ``on_repeat`` says what becomes of it: "reject" quarantines it,
naming the value and the snapshot holding the version in use; "replace" accepts it, and reading the
snapshots together keeps the newer batch's row (``snapshots.read_snapshots``).

The lookup is one DuckDB join per unique field, of the batch's values with the model's snapshots read from
their Parquet files, so a history of millions of rows never passes through Python.
"""

from __future__ import annotations

import duckdb
import msgspec
import polars as pl

from appliance.data.contract import DataContract, FieldRule
from appliance.data.snapshots import Snapshot
from storage.offline_store import OfflineStore

_ROW = "_batch_row"
# A refused repeat's reason, "FIELD: VALUE is held with other values by snapshot HASH", and the same without
# its value (a regular expression and its replacement, in DuckDB's syntax), which the quarantine counts by.
REPEAT_PATTERN = r"^(.+?): .+ (is held with other values by snapshot [0-9a-f]+)$"
REPEAT_COUNTED = r"\1: … \2"


class Repeats(msgspec.Struct):
    refused: pl.Series  # per accepted row: why "reject" quarantines it; null for a row that stays
    rejected: list[str]  # per field: how many rows were quarantined, and what to do about it
    replacing: list[str]  # per field: how many held rows the batch's rows replace, and where they are


def find_repeats(store: OfflineStore, held: list[Snapshot], contract: DataContract, accepted: pl.DataFrame) -> Repeats:
    """The accepted rows of a batch whose unique values the ``held`` snapshots (oldest first) hold with
    other values, judged by each unique field's ``on_repeat``."""
    refused = pl.Series("reason", [None] * accepted.height, pl.String)
    rejected: list[str] = []
    replacing: list[str] = []
    rules = [rule for rule in contract.identity if rule.name in accepted.columns]
    if not held or not rules or accepted.height == 0:
        return Repeats(refused, rejected, replacing)
    con = duckdb.connect(":memory:")
    try:
        files = [str(store.root / s.path) for s in held]
        con.register("batch", accepted.with_row_index(_ROW))
        con.register(
            "held_files",
            pl.DataFrame(
                {"_held_file": files, "_held_position": range(len(held)), "_held_snapshot": [s.hash for s in held]}
            ),
        )
        held_columns = {
            c[0]
            for c in con.execute("SELECT * FROM read_parquet(?, union_by_name = true) LIMIT 0", [files]).description
        }
        for rule in rules:
            if rule.name not in held_columns:
                continue
            changed = _changed_repeats(con, files, rule, accepted.columns, held_columns)
            if changed.height == 0:
                continue
            snapshots = _named(changed["_held_snapshot"])
            if rule.on_repeat == "replace":
                replacing.append(
                    f"{changed.height:,} rows replace the rows with the same {rule.name} in snapshot(s) "
                    f'{snapshots} (on_repeat = "replace": the newer batch\'s row is the one read)'
                )
                continue
            value = pl.col(rule.name).cast(pl.String)
            shown = pl.format("'{}'", value) if accepted.schema[rule.name] == pl.String else value
            held_by = pl.col("_held_snapshot").str.head(12)
            reason = pl.format(f"{rule.name}: {{}} is held with other values by snapshot {{}}", shown, held_by)
            reasons = changed.select(_ROW, reason=reason)
            placed = pl.Series("reason", [None] * accepted.height, pl.String).scatter(reasons[_ROW], reasons["reason"])
            refused = pl.select(pl.coalesce(refused, placed)).to_series()
            rejected.append(
                f"{changed.height:,} rows repeat {rule.name} values that snapshot(s) {snapshots} hold "
                f'with other values and were quarantined (on_repeat = "reject" keeps the held rows); '
                f'if the batch corrects them, set on_repeat = "replace" on {rule.name} in the contract '
                "and ingest it again"
            )
    finally:
        con.close()
    return Repeats(refused, rejected, replacing)


def _changed_repeats(
    con: duckdb.DuckDBPyConnection, files: list[str], rule: FieldRule, columns: list[str], held_columns: set[str]
) -> pl.DataFrame:
    """Rows of ``batch`` (``_batch_row``, the value) whose ``rule`` value the newest snapshot holding it holds
    with other values (``_held_snapshot``). A column the snapshots lack is null there."""
    key = _quote(rule.name)
    differs = " OR ".join(
        f"b.{_quote(c)} IS DISTINCT FROM h.{_quote(c)}" if c in held_columns else f"b.{_quote(c)} IS NOT NULL"
        for c in columns
    )
    held = ", ".join(f"r.{_quote(c)}" for c in columns if c in held_columns)
    return con.sql(
        f"SELECT b.{_ROW}, b.{key}, h._held_snapshot FROM batch b JOIN ("
        f"  SELECT {held}, f._held_position, f._held_snapshot "
        "   FROM read_parquet(?, union_by_name = true, filename = '_held_file') r JOIN held_files f USING (_held_file)"
        f"  WHERE r.{key} IN (SELECT {key} FROM batch)"
        f"  QUALIFY row_number() OVER (PARTITION BY r.{key} ORDER BY f._held_position DESC) = 1"
        f") h ON b.{key} = h.{key} WHERE {differs} ORDER BY b.{_ROW}",
        params=[files],
    ).pl()


def _named(hashes: pl.Series) -> str:
    """The snapshots holding a field's repeats, by short hash: the first three, then how many more."""
    short = sorted({h[:12] for h in hashes})
    return ", ".join(short[:3]) + (f" and {len(short) - 3} more" if len(short) > 3 else "")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
