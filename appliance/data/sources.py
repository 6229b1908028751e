"""Reading a source: one CSV or Parquet file, or a folder of them, as one batch."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from appliance.errors import InvalidInput, NotFound

READABLE = {".parquet", ".csv"}


def read_source(path: Path) -> pl.DataFrame:
    """Read a file or a folder of files into one frame; a malformed file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path} does not exist; pass a CSV or Parquet file or a folder of them")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READABLE) if path.is_dir() else [path]
    if not files:
        raise InvalidInput(f"folder {path} holds no .csv or .parquet files")
    frames = [_read_file(f) for f in files]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as e:
        raise InvalidInput(f"the files in {path} do not share a schema ({e}); ingest them one by one") from None


def _read_file(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InvalidInput(f"{path} is neither .csv nor .parquet; convert it or rename it")
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, try_parse_dates=False, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidInput(
            f"{path} could not be read as {suffix[1:].upper()} ({first_line}); the file looks "
            "malformed or truncated — nothing was written, re-export it and ingest again"
        ) from None
