"""Data and features: `ingest`, `data list|show|diff|quarantine`, `features materialize|skew|show`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli.arguments import Subcommands, add_json, open_home, parse_time
from appliance.cli.output import plain, print_json, table, when
from appliance.errors import InvalidInput

if TYPE_CHECKING:
    from appliance.data.snapshots import SnapshotDiff
    from appliance.home import Home


def register(commands: Subcommands) -> None:
    ingest = commands.add(
        "ingest",
        _ingest,
        "check a CSV/Parquet file or folder against the model's contract and snapshot the accepted rows",
        model="a registered model (its data contract checks the rows)",
    )
    ingest.add_argument("path", type=Path, help="a CSV or Parquet file, or a folder of them")
    ingest.add_argument("--as-of", default=None, help="reference time for freshness (ISO 8601; default: now)")

    data = commands.add("data", None, "data snapshots and the quarantine")
    actions = Subcommands(data, "ACTION")
    data_list = actions.add(
        "list", _data_list, "a model's snapshots, with the versions trained on each", model="a registered model"
    )
    add_json(data_list, "the snapshots, oldest first, each with its versions (those trained on it)")
    data_show = actions.add("show", _data_show, "one snapshot (a hash prefix will do)")
    data_show.add_argument("hash", help="the snapshot's hash, or a unique prefix of it")
    data_show.add_argument(
        "--model", default=None, help="only this model's snapshot (models reading the same bytes each have one)"
    )
    add_json(data_show, "a list of the snapshot as each model holds it, with its file and the versions trained on it")
    data_diff = actions.add("diff", _data_diff, "what changed between two snapshots")
    data_diff.add_argument("old", help="the earlier snapshot's hash or a unique prefix")
    data_diff.add_argument("new", help="the later snapshot's hash or a unique prefix")
    data_diff.add_argument(
        "--model", default=None, help="the model whose snapshots these are, where several models hold the same bytes"
    )
    add_json(
        data_diff,
        "old and new (each snapshot), added_columns, removed_columns, retyped_columns, only_in_old and only_in_new "
        "(null where the schemas differ)",
    )
    quarantined = actions.add(
        "quarantine", _data_quarantine, "a model's quarantined rows with their reasons", model="a registered model"
    )
    quarantined.add_argument("--reason", default=None, help="only rows whose reason contains this text")
    quarantined.add_argument("--limit", type=int, default=20, help="sample rows to show (default %(default)s)")
    add_json(
        quarantined, "rows, by_reason (each reason and its rows) and sample (the sample rows, each with its reason)"
    )

    features = commands.add("features", None, "the feature store")
    actions = Subcommands(features, "ACTION")
    actions.add(
        "materialize",
        _features_materialize,
        "write each entity's latest features to the online store",
        model="a registered model with an entity key",
    )
    skew = actions.add(
        "skew",
        _features_skew,
        "compare online values with an offline recomputation",
        model="a registered model with an entity key",
    )
    skew.add_argument("--sample", type=int, default=200, help="entities to check (default 200)")
    skew.add_argument("--seed", type=int, default=0, help="seed of the random sample of entities (default 0)")
    add_json(
        skew,
        "namespace, as_of, entities, features, ahead and mismatches (entity, feature, online, offline); "
        "it exits 1 on a mismatch as the text does",
    )
    feature_show = actions.add(
        "show",
        _features_show,
        "the features a request for an entity would get",
        model="a registered model with an entity key",
    )
    feature_show.add_argument("entity", help="the entity key's value")
    feature_show.add_argument("--at", default=None, help="the request's event time (ISO 8601; default: now)")
    add_json(feature_show, "the request's record completed with its features, on one line")


def _ingest(args: argparse.Namespace) -> int:
    from appliance.data.declared import check_spec_types, model_contract
    from appliance.data.ingest import ingest

    as_of = parse_time(args.as_of, "--as-of") if args.as_of else datetime.now(UTC)
    with open_home(args) as home:
        spec = home.spec(args.model)
        contract = model_contract(spec)
        check_spec_types(spec, contract)
        report = ingest(home.conn, home.offline, spec.name, contract, args.path, as_of=as_of, horizon=spec.data.horizon)
        s = report.snapshot
        print(f"read {report.rows_read:,} rows: {report.accepted:,} accepted, {report.quarantined:,} quarantined")
        print(
            f"snapshot {s.hash[:12]} {'(new)' if report.new_snapshot else '(identical content: unchanged)'}: "
            f"{s.rows:,} rows, {s.min_event_time} .. {s.max_event_time}"
        )
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.quarantined:
            print(f"see the quarantined rows with `appliance data quarantine {spec.name}`")
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import list_snapshots, versions_trained_on

    with open_home(args) as home:
        home.registry.model(args.model)
        found = [
            (s, [v for _, v in versions_trained_on(home.conn, s.hash, args.model)])
            for s in list_snapshots(home.conn, args.model)
        ]
    if args.json:
        print_json([plain(s) | {"versions": versions} for s, versions in found])
        return 0
    table(
        ("SNAPSHOT", "ROWS", "QUARANTINED", "FROM", "TO", "PARENT", "CREATED", "VERSIONS"),
        [
            (
                s.hash[:12],
                f"{s.rows:,}",
                f"{s.quarantined:,}",
                _day(s.min_event_time),
                _day(s.max_event_time),
                (s.parent or "-")[:12],
                when(s.created_at),
                ", ".join(f"v{v}" for v in versions) or "-",
            )
            for s, versions in found
        ],
    )
    if not found:
        print(f"no snapshots yet — run `appliance ingest {args.model} PATH` or `appliance train {args.model}`")
    return 0


def _data_show(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import find_snapshots, versions_trained_on

    with _home_of_model(args) as home:
        found = [  # one per model holding it
            (s, home.offline.root / s.path, versions_trained_on(home.conn, s.hash, s.model))
            for s in find_snapshots(home.conn, args.hash, args.model)
        ]
    if args.json:
        print_json(
            [
                plain(s) | {"file": file, "trained": [{"model": m, "version": v} for m, v in trained]}
                for s, file, trained in found
            ]
        )
        return 0
    for i, (s, file, trained) in enumerate(found):
        print(
            ("\n" if i else "") + f"snapshot     {s.hash}\nmodel        {s.model}\nrows         {s.rows:,}\n"
            f"quarantined  {s.quarantined:,}\nevent time   {s.min_event_time} .. {s.max_event_time}\n"
            f"source       {s.source}\nparent       {s.parent or '-'}\ncreated      {when(s.created_at)}\n"
            f"file         {file}\n"
            f"trained      {', '.join(f'{m} v{v}' for m, v in trained) or 'no version yet'}\nschema"
        )
        for column, kind in s.schema.items():
            print(f"  {column}: {kind}")
    return 0


def _data_diff(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import diff_snapshots, find_snapshot_pair

    with _home_of_model(args) as home:
        d = diff_snapshots(home.offline, *find_snapshot_pair(home.conn, args.old, args.new, args.model))
    if args.json:
        print_json(d)
    else:
        print("\n".join(_diff_lines(d)))
    return 0


def _diff_lines(d: SnapshotDiff) -> list[str]:
    """Two snapshots' sizes and spans, then each column added, removed or retyped, then the rows each alone has."""
    lines = [
        f"{side} {s.hash[:12]}: {s.rows:,} rows, {s.min_event_time} .. {s.max_event_time}"
        for side, s in (("old", d.old), ("new", d.new))
    ]
    lines.append(f"rows {d.new.rows - d.old.rows:+,}; quarantined {d.old.quarantined:,} → {d.new.quarantined:,}")
    lines += [f"+ column {name}: {kind}" for name, kind in d.added_columns.items()]
    lines += [f"- column {name}: {kind}" for name, kind in d.removed_columns.items()]
    lines += [f"~ column {name}: {before} → {after}" for name, (before, after) in d.retyped_columns.items()]
    if d.only_in_old is None:
        lines.append("the schemas differ, so rows are not compared")
    else:
        lines.append(f"rows only in old: {d.only_in_old:,}; only in new: {d.only_in_new:,}")
    return lines


@contextmanager
def _home_of_model(args: argparse.Namespace) -> Iterator[Home]:
    """The data directory, where a --model given (to pick among models holding the same bytes) is known."""
    with open_home(args) as home:
        if args.model is not None:
            home.registry.model(args.model)
        yield home


def _data_quarantine(args: argparse.Namespace) -> int:
    import polars as pl

    from appliance.data.quarantine import quarantine

    with open_home(args) as home:
        home.registry.model(args.model)
        view = quarantine(home.conn, home.offline, args.model, limit=args.limit, reason=args.reason)
    if args.json:
        by_reason = [{"reason": reason, "rows": n} for reason, n in view.by_reason]
        print_json({"rows": view.rows, "by_reason": by_reason, "sample": view.sample})
        return 0
    print(f"{view.rows:,} quarantined rows" + (f" whose reason contains '{args.reason}'" if args.reason else ""))
    if view.rows:
        table(("COUNT", "REASON"), [(f"{n:,}", reason) for reason, n in view.by_reason])
        with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
            print(view.sample)
    return 0


def _features_materialize(args: argparse.Namespace) -> int:
    from appliance.features.online import materialize_model

    with open_home(args) as home:
        spec = home.spec(args.model)
        if spec.features.entity_key is None:
            print(f"model '{spec.name}' has no entity: it keeps no features online, nothing to materialize")
        for r in materialize_model(home, spec):
            print(
                f"materialized {r.rows:,} entities ({r.with_history:,} with history, newest event "
                f"{r.as_of or '-'}) into {r.namespace} in {r.seconds:.2f} s"
            )
            if r.kept:
                print(f"kept the requests answered since their newest ingested event in {r.kept:,} entities' rows")
    return 0


def _features_skew(args: argparse.Namespace) -> int:
    from appliance.features.skew import check_skew

    with open_home(args) as home:
        report = check_skew(home, home.spec(args.model), sample=args.sample, seed=args.seed)
    if args.json:
        print_json(report)
        return 1 if report.mismatches else 0
    print(
        f"checked {report.entities:,} entities × {len(report.features)} features as of {report.as_of}: "
        f"{len(report.mismatches)} mismatch(es)"
    )
    if report.ahead:
        print(
            f"not checked: {report.ahead:,} entities whose rows answered requests moved past their newest "
            "ingested event"
        )
    if report.mismatches:
        table(
            ("ENTITY", "FEATURE", "ONLINE", "OFFLINE"),
            [(m.entity, m.feature, repr(m.online), repr(m.offline)) for m in report.mismatches[:50]],
        )
        print(f"run `appliance features materialize {args.model}` if data was ingested since the last one")
        return 1
    return 0


def _features_show(args: argparse.Namespace) -> int:
    from appliance.data.declared import entity_key_type
    from appliance.features.online import OnlineFeatures

    with open_home(args) as home:
        spec = home.spec(args.model)
        if spec.features.entity_key is None:
            raise InvalidInput(f"model '{spec.name}' has no entity: it keeps no features to show")
        record = {spec.features.entity_key: args.entity}
        if args.at:
            record[spec.features.event_time] = args.at
        online = OnlineFeatures(home.online, spec.name, spec.features, entity_key_type(spec))
        completed = online.complete([record])[0]
    if args.json:
        print_json(completed)
    else:
        print(json.dumps(plain(completed), indent=2, ensure_ascii=False))
    return 0


def _day(iso: str | None) -> str:
    """An ISO time cut to the minute, for a table column."""
    return iso[:16].replace("T", " ") if iso else "-"
