"""The command line: `appliance up`, `train`, `models`, `promote`, `rollback`, `predict`, …"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import appliance
from appliance.config import bundled_spec_path, default_home
from appliance.errors import ApplianceError, InvalidInput
from appliance.logs import configure_logging
from storage.errors import StorageError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``appliance`` command; user errors print one line and exit 1."""
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        return args.run(args) or 0
    except (ApplianceError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument("--version", action="version", version=f"appliance {appliance.__version__}")
    parser.add_argument("--home", type=Path, default=None,
                        help="data directory (default: $APPLIANCE_HOME or ~/.local/share/appliance)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    init = command("init", _init, "create the data directory and register a model spec")
    init.add_argument("--spec", type=Path, default=None, help="model spec (default: the bundled sample)")

    up = command("up", _up, "train what is needed, promote it, and serve the API")
    up.add_argument("--spec", type=Path, default=None, help="model spec (default: the bundled sample)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--headless", action="store_true", help="no dashboard; what systemd runs")

    train = command("train", _train, "run the training pipeline for a model and register the result")
    train.add_argument("model")

    models = command("models", _models, "list models, or one model's versions")
    models.add_argument("model", nargs="?")

    promote = command("promote", _promote, "point a model's production alias at a version")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="")

    rollback = command("rollback", _rollback, "return production to the previous version")
    rollback.add_argument("model")
    rollback.add_argument("--reason", default="")

    predict = command("predict", _predict, "score records with a model's production version, in process")
    predict.add_argument("model")
    predict.add_argument("--json", required=True, dest="payload",
                         help="one record as a JSON object, or a list of them")

    backup = command("backup", _backup, "copy the whole data directory to DEST, safely while serving")
    backup.add_argument("dest", type=Path)

    restore = command("restore", _restore, "make a backup the data directory (verified against its manifest)")
    restore.add_argument("src", type=Path)
    restore.add_argument("--force", action="store_true",
                         help="restore over a non-empty data directory (it is kept aside, not deleted)")

    machine = command("machine", _machine, "CPU, memory, GPUs, disk use of the data directory, cost per hour")
    machine.add_argument("--cost", type=Path, default=None,
                         help="a TOML file with a [cost] section (electricity price, hardware amortization)")
    machine.add_argument("--json", action="store_true", help="the snapshot and cost per hour as JSON")
    return parser


def _home(args: argparse.Namespace):
    from appliance.home import Home

    return Home(args.home or default_home())


def _say(line: str) -> None:
    print(line, flush=True)


def _init(args: argparse.Namespace) -> int:
    from appliance.spec import load_spec

    with _home(args) as home:
        spec = load_spec(args.spec or bundled_spec_path())
        added = home.add_model(spec, actor="cli")
        print(f"data directory {home.root}")
        print(f"model '{spec.name}' {'registered' if added else 'already registered'} from {spec.path}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from appliance.bring_up import bring_up
    from appliance.serving.server import serve

    with _home(args) as home:
        print(f"data directory {home.root}")
        spec = args.spec or (bundled_spec_path() if not home.registry.models() else None)
        bring_up(home, spec, _say)
        root = home.root
        example = _example_request(home)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"serving on http://{shown}:{args.port} (Ctrl-C stops)")
    if example:
        name, record = example
        print("try:\n  curl -s -X POST http://{}:{}/v1/models/{}/predict -H 'content-type: application/json' "
              "-d '{}'".format(shown, args.port, name, json.dumps(record)))
    serve(root, host=args.host, port=args.port)
    return 0


def _example_request(home) -> tuple[str, dict] | None:
    """A first record of a served model's data, as a request body to show the user."""
    from appliance.data.sources import read_source

    for summary in home.registry.models():
        if summary.production is None:
            continue
        spec = home.spec(summary.name)
        events = read_source(spec.resolve(spec.data.source)).head(1)
        if spec.data.entities:
            entities = read_source(spec.resolve(spec.data.entities))
            events = events.join(entities, on=spec.features.entity_key, how="left")
        row = events.row(0, named=True)
        return summary.name, {f.name: row[f.name] for f in spec.model_features}
    return None


def _train(args: argparse.Namespace) -> int:
    from appliance.training.pipeline import train

    with _home(args) as home:
        outcome = train(home, home.spec(args.model), actor="cli", say=_say)
        v = outcome.version
        for check in outcome.gates.checks:
            print(f"gate {check.name}: {'pass' if check.passed else 'FAIL'} — {check.detail}")
        if outcome.gates.passed:
            print(f"registered {v.model} v{v.version} as candidate in {outcome.seconds:.1f} s; "
                  f"promote it with `appliance promote {v.model} {v.version}`")
            return 0
        print(f"registered {v.model} v{v.version} as REJECTED: it failed its gates and cannot be promoted")
        return 1


def _models(args: argparse.Namespace) -> int:
    with _home(args) as home:
        if args.model is None:
            rows = [(m.name, _v(m.production), _v(m.candidate), str(m.versions)) for m in home.registry.models()]
            _table(("MODEL", "PRODUCTION", "CANDIDATE", "VERSIONS"), rows)
            if not rows:
                print("no models yet — run `appliance init` or `appliance up`")
            return 0
        summary = home.registry.model(args.model)
        rows = []
        for v in home.registry.versions(args.model):
            alias = ("production" if v.version == summary.production
                     else "candidate" if v.version == summary.candidate else "")
            failed = [c["name"] for c in v.gate_report.get("checks", []) if not c["passed"]]
            rows.append((f"v{v.version}", v.status + (f" ({', '.join(failed)})" if failed else ""), alias,
                         f"{v.metrics.get('auc', float('nan')):.4f}", f"{v.metrics.get('f1', float('nan')):.3f}",
                         v.data_version[:12], v.code_version[:16], v.run_id[:8], _when(v.created_at)))
        _table(("VERSION", "STATUS", "ALIAS", "AUC", "F1", "DATA", "CODE", "RUN", "CREATED"), rows)
    return 0


def _promote(args: argparse.Namespace) -> int:
    with _home(args) as home:
        before = home.registry.alias(args.model, "production")
        v = home.registry.promote(args.model, args.version, actor="cli", reason=args.reason)
        print(f"{v.model}: production is now v{v.version} (was {_v(before)}); a running server swaps "
              "within a second")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    with _home(args) as home:
        before = home.registry.alias(args.model, "production")
        v = home.registry.rollback(args.model, actor="cli", reason=args.reason)
        print(f"{v.model}: rolled back from v{before} to v{v.version}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from appliance.serving.models import load_production

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"--json is not valid JSON ({e}); pass e.g. --json '{{\"amount\": 12.5, ...}}'") from None
    single = isinstance(payload, dict)
    records = [payload] if single else payload
    if not isinstance(records, list) or not records:
        raise InvalidInput("--json must be a record object or a non-empty list of them")
    with _home(args) as home:
        model = load_production(home, args.model)
        probabilities = model.predict(records).tolist()
    results = [{"probability": p, "label": int(p >= model.threshold)} for p in probabilities]
    body = {"model": model.name, "version": model.version}
    body |= results[0] if single else {"predictions": results}
    print(json.dumps(body))
    return 0


def _backup(args: argparse.Namespace) -> int:
    from appliance.backup import backup

    manifest = backup(args.home or default_home(), args.dest)
    size = sum(f.bytes for f in manifest.files)
    print(f"backed up {manifest.source} to {args.dest.resolve()}: {len(manifest.files)} files, "
          f"{size / 1e6:.1f} MB, schema {manifest.schema_versions}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from appliance.backup import restore

    home = args.home or default_home()
    manifest = restore(args.src, home, force=args.force)
    print(f"restored {len(manifest.files)} files from {args.src.resolve()} (taken "
          f"{_when(manifest.created_at)}) into {Path(home).resolve()}")
    return 0


def _machine(args: argparse.Namespace) -> int:
    import msgspec

    from appliance.machine.cost import CostSection, cost_per_hour, load_cost
    from appliance.machine.report import machine_report
    from appliance.machine.snapshot import take_snapshot

    cost = load_cost(args.cost) if args.cost else CostSection()
    home = Path(args.home or default_home()).expanduser()
    snapshot = take_snapshot(home if home.is_dir() else None)  # reading never creates the data directory
    if args.json:
        body = {"snapshot": snapshot, "cost": cost, "cost_per_hour": cost_per_hour(snapshot, cost)}
        print(msgspec.json.encode(body).decode())
    else:
        print("\n".join(machine_report(snapshot, cost, str(home))))
    return 0


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "-"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
