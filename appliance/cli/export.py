"""Leaving the box: `export` a version to a format other engines serve, `ingest-log` their answers back."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.cli.arguments import Subcommands, open_home

EXPORT_FORMATS = ("triton", "mlflow", "onnx-bundle")  # appliance.export.formats.FORMATS, without importing onnx
EXPORTS = "write a version as Triton or MLflow serve it, with its features and monitoring reference beside it"
INGESTS_LOG = "take another engine's answered requests into the prediction log, as the served version's"


def register(commands: Subcommands) -> None:
    export = commands.add("export", _export, EXPORTS, model="a registered model")
    export.add_argument("version", type=int, help="the version to export (see `appliance models MODEL`)")
    export.add_argument(
        "--format",
        dest="fmt",
        required=True,
        metavar="FORMAT",
        help=f"one of {', '.join(EXPORT_FORMATS)}: a Triton model repository, an MLflow model, or the "
        "ONNX file with its input schema",
    )
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="a new or empty folder to write (default: MODEL-vVERSION-FORMAT in the current one)",
    )

    ingest_log = commands.add("ingest-log", _ingest_log, INGESTS_LOG, model="a registered model")
    ingest_log.add_argument(
        "file",
        type=Path,
        help="JSON lines, CSV or Parquet: request_time, the request's fields, the answer (probability, "
        "probabilities or value); optional request_id, latency_ms, version (docs/export.md)",
    )


def _export(args: argparse.Namespace) -> int:
    from appliance.export.formats import export_model

    with open_home(args) as home:
        done = export_model(home, args.model, args.version, args.fmt, args.out)
    print(f"{args.model} v{args.version} exported for {args.fmt} to {done.out}:")
    for name in done.files:
        print(f"  {name}")
    print(f"how to serve it: {done.out / 'README.md'}; its answers come back with `appliance ingest-log {args.model}`")
    return 0


def _ingest_log(args: argparse.Namespace) -> int:
    from appliance.export.ingest_log import ingest_log

    with open_home(args) as home:
        done = ingest_log(home, args.model, args.file)
    per_version = ", ".join(f"v{v}: {n:,}" for v, n in sorted(done.versions.items()))
    print(
        f"logged {done.rows:,} answered rows of '{args.model}' ({per_version}), "
        f"event times {done.first_event} .. {done.last_event}"
    )
    if done.unlogged_columns:
        print(f"not logged (not fields the spec declares): {', '.join(done.unlogged_columns)}")
    print(f"next: `appliance jobs run monitor {args.model}`; feedback names each row's request_id")
    return 0
