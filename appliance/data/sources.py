"""Reading a source: one CSV or Parquet file, or a folder of them, as one batch."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import polars as pl

from appliance.errors import InvalidInput, NotFound

READABLE = {".parquet", ".csv"}
SEPARATORS = (",", ";", "\t", "|")  # a CSV file's separator is one of these, found from its first lines
SNIFF_LINES = 20  # the header and the lines after it that must split into as many fields as it does
_SNIFF_BYTES = 1 << 16
_UTF8_CHUNK = 1 << 20
_INFER_ROWS = 10_000  # the rows a CSV file's column types are inferred from
_WHOLE = r"^[-+]?\d+$"
_PADDED = r"^[-+]?0\d"  # a zero before another digit: "007", "-007" (not "0")


def read_source(path: Path, separator: str | None = None, retry: str = "ingest it again") -> pl.DataFrame:
    """Read a file or a folder of files into one frame; a malformed file is a clear error, ending with what
    to do and ``retry`` (the command that read it: "ingest it again"). A CSV file is split on ``separator``
    (the contract's), else on the one of ``SEPARATORS`` its first lines show (``csv_separator``)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path} does not exist; pass a CSV or Parquet file or a folder of them")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READABLE) if path.is_dir() else [path]
    if not files:
        raise InvalidInput(f"folder {path} holds no .csv or .parquet files")
    frames = [_read_file(f, separator, retry) for f in files]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as e:
        raise InvalidInput(f"the files in {path} do not share a schema ({e}); ingest them one by one") from None


def csv_separator(path: Path) -> str:
    """The separator of a CSV file: of ``SEPARATORS``, the one that splits its header into the most fields
    (at least two) with each of the next lines splitting into as many; ',' when none does."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # cut short by the read
    lines = [line for line in lines[:SNIFF_LINES] if line.strip()]
    best, most = ",", 1
    for separator in SEPARATORS:
        counts = [len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=separator)]
        counts = counts[:-1] if len(counts) > 2 else counts  # the last row may be a quoted field cut short
        if counts and counts[0] > most and all(n == counts[0] for n in counts):
            best, most = separator, counts[0]
    return best


def _read_file(path: Path, separator: str | None, retry: str) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InvalidInput(f"{path} is neither .csv nor .parquet; convert it or rename it")
    # polars reads bytes that are not UTF-8 in a header as U+FFFD without a word: checked first, whole
    bad_byte = _first_non_utf8(path) if suffix == ".csv" else None
    if bad_byte is not None:
        raise InvalidInput(
            f"{path} is not UTF-8 (byte {bad_byte:,}): re-save it as UTF-8 and {retry}; nothing was written"
        )
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        return _read_csv(path, separator or csv_separator(path))
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidInput(
            f"{path} could not be read as {suffix[1:].upper()} ({first_line}); the file looks "
            f"malformed or truncated — nothing was written, re-export it and {retry}"
        ) from None


def zero_padded(values: pl.Series) -> str | None:
    """The first of the text ``values`` written as a whole number with leading zeros ("007", "00208"; not
    "0"), when every value is a whole number; else None. Such values are identifiers, zeros included: as
    numbers "00208" and "208" would be one value."""
    text = values.drop_nulls()
    # a cheap look first, so a column of plain numbers (the common case, at every read) costs little
    starts = text.filter(text.str.starts_with("0") | text.str.starts_with("-0") | text.str.starts_with("+0"))
    padded = starts.filter(starts.str.contains(_PADDED))
    return padded[0] if padded.len() and text.str.contains(_WHOLE).all() else None


def _read_csv(path: Path, separator: str) -> pl.DataFrame:
    """A CSV file with polars' types, except that a column of whole numbers written with leading zeros
    ("00208") stays text: read as integers, its zeros would be gone before any contract saw them."""
    inferred = pl.scan_csv(path, separator=separator, try_parse_dates=False, infer_schema_length=_INFER_ROWS)
    whole = {c: t for c, t in inferred.collect_schema().items() if t.is_integer()}
    frame = pl.read_csv(
        path,
        separator=separator,
        try_parse_dates=False,
        infer_schema_length=_INFER_ROWS,
        schema_overrides=dict.fromkeys(whole, pl.String),
    )
    # strict: a value past the rows types are inferred from that is no whole number fails the read, as it would
    return frame.with_columns(pl.col(c).cast(t) for c, t in whole.items() if zero_padded(frame[c]) is None)


def _first_non_utf8(path: Path) -> int | None:
    """The offset of the first byte of ``path`` that is not UTF-8 (None: the whole file is)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # of the chunk being decoded; a character cut by the previous chunk's end is held before it
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(_UTF8_CHUNK)
                held = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    return offset - held + e.start
                if not chunk:
                    return None
                offset += len(chunk)
    except OSError:
        return None
