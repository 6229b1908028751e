"""SQLite connections with the settings every appliance database uses, and versioned migrations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storage.errors import DatabaseCorrupt, SchemaTooNew, StorageError

BUSY_TIMEOUT_MS = 10_000
MAX_INTEGER = 2**63 - 1  # SQLite's largest: an id or version past it is none that exists (binding one fails)


@dataclass(frozen=True)
class Migration:
    """One step of a database's schema history; applied once, in version order."""

    version: int
    name: str
    sql: str


def connect(path: Path | str, migrations: Sequence[Migration] = ()) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite database in WAL mode and bring its schema up to date."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")  # reads the header and the schema: damage shows here
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if migrations:
            migrate(conn, migrations)
    except sqlite3.DatabaseError as e:
        conn.close()
        if not is_damage(e):
            raise
        raise damaged(path, e) from None
    return conn


def is_damage(error: sqlite3.DatabaseError) -> bool:
    """Whether SQLite refused a file as damaged (not busy, not full, not a bad statement)."""
    return (error.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def damaged(path: Path | str, error: sqlite3.DatabaseError | str) -> DatabaseCorrupt:
    """The error for a database SQLite found damaged: which file, and the way back."""
    return DatabaseCorrupt(
        f"database {path} is damaged ({error}); nothing was changed — stop the appliance and "
        "restore the data directory from a backup: `appliance restore BACKUP --force` (it keeps "
        "the damaged directory aside)"
    )


def unwritable(error: sqlite3.DatabaseError, what: str = "a database of the data directory") -> StorageError | None:
    """The error for a write SQLite refused because the file cannot take it (read-only: its file, folder or file
    system; or the disk is full), saying what to do; None for any other error. The write was rolled back."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_READONLY:
        return StorageError(
            f"{what} cannot be written ({error}); it was not changed — make the data directory and its files "
            "writable by the user running the appliance (check the owner, `chmod`, `chattr`, a read-only mount)"
        )
    if code == sqlite3.SQLITE_FULL:
        return StorageError(
            f"{what} cannot be written: the disk is full ({error}); it was not changed — free some space, then "
            "run the command again (`appliance retention` drops old prediction logs)"
        )
    return None


def explained(error: sqlite3.DatabaseError) -> StorageError | None:
    """The error to show for one a later query raised, where which database is not known: damage, or a write the
    file cannot take; None for any other (a bug, to be raised as it is)."""
    return damaged("a database of the data directory", error) if is_damage(error) else unwritable(error)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block as one write transaction, taking the write lock up front (BEGIN IMMEDIATE)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied to this database (0 for a new one)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations this database has not seen yet, each in its own transaction, in order."""
    ordered = sorted(migrations, key=lambda m: m.version)
    latest = ordered[-1].version if ordered else 0
    current = schema_version(conn)
    if current > latest:
        raise SchemaTooNew(
            f"database {database_path(conn)} has schema version {current}, newer than this "
            f"program knows ({latest}); upgrade the appliance or restore an older backup"
        )
    applied = []
    for migration in ordered:
        # Any version not yet recorded is applied, not only those above the highest: a version
        # numbered below one already applied (work merged from parallel branches) is not skipped.
        if _applied(conn, migration.version):
            continue
        with transaction(conn):
            # Re-check inside the write lock: another process may have migrated meanwhile.
            if _applied(conn, migration.version):
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        applied.append(migration.version)
    return applied


def _applied(conn: sqlite3.Connection, version: int) -> bool:
    return conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone() is not None


def database_path(conn: sqlite3.Connection) -> str:
    """The file behind a connection, for messages."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return row["file"] if row else "?"


def _statements(sql: str) -> Iterator[str]:
    # executescript would commit our transaction; split complete statements instead.
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer
