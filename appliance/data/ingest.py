"""Ingestion: read a source, check it against the data contract, quarantine bad rows, snapshot the rest."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import msgspec

from appliance import progress
from appliance.data.contract import DataContract, check_batch, quarantine_accepted
from appliance.data.identity import find_repeats
from appliance.data.snapshots import Snapshot, list_snapshots, record_snapshot
from appliance.data.sources import read_source
from appliance.errors import InvalidInput
from appliance.spec import EventHorizon
from storage.database import transaction
from storage.offline_store import OfflineStore


class IngestReport(msgspec.Struct):
    """What one ingest did; rows_read always equals accepted + quarantined."""

    source: str
    rows_read: int
    accepted: int
    quarantined: int
    snapshot: Snapshot
    new_snapshot: bool
    quarantine_file: str | None
    warnings: list[str]


def ingest(
    conn: sqlite3.Connection,
    store: OfflineStore,
    model: str,
    contract: DataContract,
    path: Path,
    as_of: datetime | None = None,
    horizon: EventHorizon | None = None,
) -> IngestReport:
    """Ingest one file or folder for a model; batch-level failures raise and write nothing. Given the model's
    ``horizon`` (``[data]`` of its spec), rows whose event time is outside it are quarantined."""
    with progress.step(f"ingest {model}") as phase:
        phase.update(doing=f"reading {Path(path).name}")
        frame = read_source(path, contract.contract.separator)
        if frame.height == 0:
            raise InvalidInput(f"{path} holds no rows; nothing was written")
        phase.update(doing=f"checking {frame.height:,} rows against the contract")
        result = check_batch(contract, frame, as_of, horizon)
        repeats = find_repeats(store, list_snapshots(conn, model), contract, result.accepted)
        result = quarantine_accepted(result, frame, repeats.refused)
        if result.accepted.height == 0:
            replace = (
                '; if the batch corrects rows held earlier, set on_repeat = "replace" on the unique field in the '
                "contract and ingest it again"
                if repeats.rejected
                else ""
            )
            raise InvalidInput(
                f"every one of the {result.rows_read:,} rows in {path} broke the contract "
                f"(first reason: {result.quarantined['reason'][0]}); nothing was written{replace}"
            )
        quarantine_file = None
        if result.quarantined.height:
            _, qpath = store.write(f"{model}/quarantine", result.quarantined)
            quarantine_file = str(qpath)
        phase.update(doing=f"writing the snapshot of {result.accepted.height:,} rows")
        accepted = result.accepted.sort(contract.contract.event_time, maintain_order=True)
        snapshot, created = record_snapshot(
            conn,
            store,
            model,
            accepted,
            event_time=contract.contract.event_time,
            source=str(Path(path).resolve()),
            quarantined=result.quarantined.height,
            identity=[rule.name for rule in contract.identity],
        )
    # Rows replace held ones only when the batch is new: the same content ingested again changes nothing.
    warnings = result.warnings + repeats.rejected + (repeats.replacing if created else [])
    with transaction(conn):
        conn.execute(
            "INSERT INTO ingests (model, source, at, rows_read, accepted, quarantined, snapshot, "
            "quarantine_path, warnings_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model,
                str(Path(path).resolve()),
                time.time(),
                result.rows_read,
                accepted.height,
                result.quarantined.height,
                snapshot.hash,
                str(Path(quarantine_file).relative_to(store.root)) if quarantine_file else None,
                json.dumps(warnings),
            ),
        )
    return IngestReport(
        source=str(path),
        rows_read=result.rows_read,
        accepted=accepted.height,
        quarantined=result.quarantined.height,
        snapshot=snapshot,
        new_snapshot=created,
        quarantine_file=quarantine_file,
        warnings=warnings,
    )


def ingested_sources(conn: sqlite3.Connection, model: str, like: str) -> list[str]:
    """The sources of the model's ingests whose path matches a SQL LIKE pattern."""
    return [r[0] for r in conn.execute("SELECT source FROM ingests WHERE model = ? AND source LIKE ?", (model, like))]


def latest_quarantine(conn: sqlite3.Connection, model: str, snapshot: str) -> str | None:
    """The quarantine file (relative to the offline store) of the newest ingest into a snapshot that had one."""
    row = conn.execute(
        "SELECT quarantine_path FROM ingests WHERE model = ? AND snapshot = ? "
        "AND quarantine_path IS NOT NULL ORDER BY at DESC LIMIT 1",
        (model, snapshot),
    ).fetchone()
    return None if row is None else row[0]
