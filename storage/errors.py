"""Errors raised by the storage layer; each message says what to do next."""


class StorageError(Exception):
    """A storage problem a user can act on (bad file, corrupt artifact, newer schema)."""


class ArtifactMissing(StorageError):
    """The artifact store has no file for a hash it was asked for."""


class ArtifactCorrupt(StorageError):
    """An artifact's bytes no longer match the hash it was stored under."""


class SchemaTooNew(StorageError):
    """A database was written by a newer version of the program."""


class DatabaseCorrupt(StorageError):
    """A database file SQLite cannot read as one: overwritten, truncated, or not a database at all."""
