"""The command line: `appliance up`, `train`, `models`, `promote`, `rollback`, `predict`, …"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import appliance
from appliance.config import bundled_spec_path, default_home
from appliance.errors import ApplianceError, InvalidInput, NotFound
from appliance.logs import configure_logging
from appliance.task import SUMMARY, metric_label
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
    given = init.add_mutually_exclusive_group()
    given.add_argument("--spec", type=Path, default=None, help="model spec (default: the bundled sample)")
    given.add_argument("--from", dest="source", type=Path, default=None, metavar="FILE",
                       help="draft a spec and a data contract from a CSV/Parquet file or folder, then register it")
    init.add_argument("--target", default=None, metavar="COLUMN", help="--from: the column to predict")
    init.add_argument("--task", default=None, choices=("binary", "multiclass", "regression"),
                      help="--from: what the model predicts (default: guessed from the target's values)")
    init.add_argument("--time", default=None, metavar="COLUMN",
                      help="--from: the event-time column (default: the first column of times)")
    init.add_argument("--entity", default=None, metavar="COLUMN",
                      help="--from: the entity key (default: none, each row stands alone)")
    init.add_argument("--name", default=None, help="--from: the model's name (default: from the file's name)")
    init.add_argument("--out", type=Path, default=None, metavar="DIR",
                      help="--from: the folder the spec and contract are written to (default: the current one)")

    up = command("up", _up, "train what is needed, promote it, and serve the API")
    up.add_argument("--spec", type=Path, default=None, help="model spec (default: the bundled sample)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--headless", action="store_true", help="no dashboard; what systemd runs")
    up.add_argument("--demo", action="store_true", help="once serving, replay the sample's live days through the API")
    up.add_argument("--speed", type=float, default=7200.0,
                    help="--demo: event-seconds per wall-second (default %(default)g: a day in 12 s)")

    train = command("train", _train, "run the training pipeline for a model and register the result")
    train.add_argument("model")
    train.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                       help="continue a failed run from the stage that failed (default: the latest run)")
    train.add_argument("--retrain", action="store_true",
                       help="also learn from the labelled predictions, holding out only the newest days "
                            "([training] retrain_eval_days), as an alert's retrain does")

    models = command("models", _models, "list models, or one model's versions")
    models.add_argument("model", nargs="?")

    promote = command("promote", _promote, "point a model's production alias at a version")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="")
    promote.add_argument("--override", action="store_true",
                         help="promote a version that failed its gates (needs --reason; audited)")

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

    command("retention", _retention, "apply the retention policy of <home>/appliance.toml to the prediction "
                                     "log now, and show disk use per part")

    ingest = command("ingest", _ingest, "check a CSV/Parquet file or folder against the model's contract "
                                        "and snapshot the accepted rows")
    ingest.add_argument("model")
    ingest.add_argument("path", type=Path)
    ingest.add_argument("--as-of", default=None, help="reference time for freshness (ISO 8601; default: now)")

    data = command("data", None, "data snapshots and the quarantine")
    data_commands = data.add_subparsers(required=True, metavar="ACTION")
    data_list = data_commands.add_parser("list", help="a model's snapshots, with the versions trained on each")
    data_list.set_defaults(run=_data_list)
    data_list.add_argument("model")
    data_show = data_commands.add_parser("show", help="one snapshot (a hash prefix will do)")
    data_show.set_defaults(run=_data_show)
    data_show.add_argument("hash")
    data_show.add_argument("--model", default=None, help="only this model's snapshot (models reading the same "
                                                         "bytes each have one)")
    data_diff = data_commands.add_parser("diff", help="what changed between two snapshots")
    data_diff.set_defaults(run=_data_diff)
    data_diff.add_argument("old")
    data_diff.add_argument("new")
    data_diff.add_argument("--model", default=None, help="the model whose snapshots these are, where several "
                                                         "models hold the same bytes")
    quarantined = data_commands.add_parser("quarantine", help="a model's quarantined rows with their reasons")
    quarantined.set_defaults(run=_data_quarantine)
    quarantined.add_argument("model")
    quarantined.add_argument("--reason", default=None, help="only rows whose reason contains this text")
    quarantined.add_argument("--limit", type=int, default=20)

    features = command("features", None, "the feature store")
    feature_commands = features.add_subparsers(required=True, metavar="ACTION")
    materialize = feature_commands.add_parser("materialize", help="write each entity's latest features to the "
                                                                  "online store")
    materialize.set_defaults(run=_features_materialize)
    materialize.add_argument("model")
    skew = feature_commands.add_parser("skew", help="compare online values with an offline recomputation")
    skew.set_defaults(run=_features_skew)
    skew.add_argument("model")
    skew.add_argument("--sample", type=int, default=200, help="entities to check (default 200)")
    skew.add_argument("--seed", type=int, default=0)
    feature_show = feature_commands.add_parser("show", help="the features a request for an entity would get")
    feature_show.set_defaults(run=_features_show)
    feature_show.add_argument("model")
    feature_show.add_argument("entity")
    feature_show.add_argument("--at", default=None, help="the request's event time (ISO 8601; default: now)")

    runs = commands.add_parser("runs", help="tracked runs: list, show, compare",
                               description="tracked runs: list, show, compare")
    run_commands = runs.add_subparsers(required=True, metavar="ACTION")
    runs_list = run_commands.add_parser("list", help="recent runs, newest first")
    runs_list.set_defaults(run=_runs_list)
    runs_list.add_argument("--model", default=None)
    runs_list.add_argument("--limit", type=int, default=20)
    runs_show = run_commands.add_parser("show", help="one run: stages, params, metrics, tags, artifacts, trials")
    runs_show.set_defaults(run=_runs_show)
    runs_show.add_argument("run_id", metavar="RUN", help="run id or a unique prefix of it")
    runs_compare = run_commands.add_parser("compare", help="params and final metrics of runs side by side")
    runs_compare.set_defaults(run=_runs_compare)
    runs_compare.add_argument("runs", nargs="+", metavar="RUN")

    reproduce = command("reproduce", _reproduce,
                        "retrain a version from its recorded data, params, seed and code; report the differences")
    reproduce.add_argument("model")
    reproduce.add_argument("version", type=int)

    register = command("register", _register,
                       "register a model trained elsewhere (ONNX, or a LightGBM model file) through the gates")
    register.add_argument("model", help="a model registered with `appliance init --spec`")
    model_file = register.add_mutually_exclusive_group(required=True)
    model_file.add_argument("--onnx", type=Path, metavar="FILE",
                            help="an ONNX model taking one float32 input 'features' [rows, F] (the spec's features "
                                 "in order, categories as codes) and giving 'probabilities' [rows, 2] (binary), "
                                 "[rows, K] (multiclass) or 'value' [rows, 1] (regression); no parity gate applies")
    model_file.add_argument("--lightgbm", type=Path, metavar="FILE",
                            help="a LightGBM model text file (booster.save_model) whose objective fits the spec's "
                                 "task, converted to ONNX here; "
                                 "parity of ONNX with LightGBM is a gate")
    register.add_argument("--eval", type=Path, default=None, metavar="DATA",
                          help="labelled CSV/Parquet events, checked against the data contract, that score it "
                               "(default: the last [training] eval_days days of the ingested snapshots)")
    register.add_argument("--categories", type=Path, default=None, metavar="FILE.json",
                          help='each category feature\'s values in code order, {"color": ["red", "green"]}; '
                               "without it they are learnt as training learns them: distinct values, sorted, of "
                               "the ingested days before the held-out ones (with --eval: of the DATA rows)")
    register.add_argument("--reason", default="", help="why (goes into the audit log)")

    keys = command("keys", lambda a: keys.print_help() or 0, "API keys: create, list, revoke")
    key_commands = keys.add_subparsers(metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key (its token is shown once)")
    create.set_defaults(run=_keys_create)
    create.add_argument("--scope", action="append", required=True, choices=("predict", "feedback", "admin"),
                        help="what the key may call (repeat for several; admin may call everything)")
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument("--rate", type=float, default=None, help="requests per second allowed (default 1000)")
    key_commands.add_parser("list", help="every key and whether it is revoked").set_defaults(run=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key; a running server refuses it within a second")
    revoke.set_defaults(run=_keys_revoke)
    revoke.add_argument("id")

    deploy = command("deploy", lambda a: deploy.print_help() or 0,
                     "deploy a candidate: blue-green, canary, shadow or A/B; advance, abort, status")
    deploy.add_argument("model")
    steps = deploy.add_subparsers(metavar="ACTION")
    begin = steps.add_parser("start", help="start deploying a version next to production")
    begin.set_defaults(run=_deploy_start)
    begin.add_argument("strategy", choices=("blue-green", "canary", "shadow", "ab"))
    begin.add_argument("--version", type=int, required=True, help="the candidate version")
    begin.add_argument("--percent", type=float, default=None, help="A/B: the candidate's share (default 50)")
    begin.add_argument("--key", dest="split_key", default=None,
                       help="A/B: the request field to split by (default: the spec's deployment.ab_key)")
    for action, run, text in (("advance", _deploy_advance, "next canary step, blue-green switch, or promote"),
                              ("abort", _deploy_abort, "stop; all traffic back to the baseline")):
        sub = steps.add_parser(action, help=text)
        sub.set_defaults(run=run)
        sub.add_argument("--reason", default="")
    steps.add_parser("status", help="the deployment and what it has shown so far").set_defaults(run=_deploy_status)

    alerts = command("alerts", _alerts_list, "alerts raised by the monitoring rules: list, show, ack, resolve")
    alert_commands = alerts.add_subparsers(metavar="ACTION")
    alerts_list = alert_commands.add_parser("list", help="unresolved alerts, newest first")
    alerts_list.set_defaults(run=_alerts_list)
    for sub in (alerts, alerts_list):
        sub.add_argument("--model", default=None)
        sub.add_argument("--all", action="store_true", help="resolved alerts too")
    for action, run, text in (("show", _alerts_show, "one alert with the actions it took and their outcomes"),
                              ("ack", _alerts_ack, "acknowledge an alert: someone is on it"),
                              ("resolve", _alerts_resolve, "resolve an alert; if its rule fires again, a new one opens")):
        sub = alert_commands.add_parser(action, help=text)
        sub.set_defaults(run=run)
        sub.add_argument("id", type=int)

    replay = command("replay", _replay, "send a model's live data through the running API, labels later, "
                                        "monitoring at each day boundary (the demo)")
    replay.add_argument("model")
    replay.add_argument("--url", default="http://127.0.0.1:8000", help="the running API (default %(default)s)")
    replay.add_argument("--speed", type=float, default=7200.0,
                        help="event-seconds per wall-second (default 7200: a day in 12 s; 0: as fast as possible)")
    replay.add_argument("--days", type=int, default=None, help="replay only the first N days")
    replay.add_argument("--label-delay", type=float, default=2.0, metavar="HOURS",
                        help="labels arrive this many event-hours after their prediction (default 2)")
    replay.add_argument("--key", default=None, help="an API key with predict and feedback scopes, if keys exist")

    machine = command("machine", _machine, "CPU, memory, GPUs, disk use of the data directory, cost per hour")
    machine.add_argument("--cost", type=Path, default=None,
                         help="a TOML file with a [cost] section (electricity price, hardware amortization)")
    machine.add_argument("--json", action="store_true", help="the snapshot and cost per hour as JSON")
    monitor = command("monitor", _monitor, "a model's monitoring results per event-time window")
    monitor.add_argument("model")
    monitor.add_argument("--check", default=None,
                         choices=("quality", "drift", "performance", "estimated", "serving", "machine", "pipeline"),
                         help="one check in detail (default: a line per window)")
    monitor.add_argument("--since", default=None, help="windows starting on or after this date (2026-10-20)")

    jobs = command("jobs", lambda a: jobs.print_help() or 0, "scheduled jobs: list them, or run one now")
    job_commands = jobs.add_subparsers(metavar="ACTION")
    job_commands.add_parser("list", help="every job, its schedule, last and next run").set_defaults(run=_jobs_list)
    job_run = job_commands.add_parser("run", help="run a job now, in this process (monitor, train)")
    job_run.set_defaults(run=_jobs_run)
    job_run.add_argument("job")
    job_run.add_argument("model", nargs="?", default=None, help="default: every model")

    tui = command("tui", _tui, "the dashboard over the data directory (beside a running `appliance up --headless`)")
    tui.add_argument("--cost", type=Path, default=None,
                     help="a TOML file with a [cost] section (default: the data directory's appliance.toml, if any)")
    return parser


def _home(args: argparse.Namespace):
    from appliance.home import Home

    return Home(args.home or default_home())


def _say(line: str) -> None:
    print(line, flush=True)


def _init(args: argparse.Namespace) -> int:
    from appliance.spec import load_spec

    if args.source is not None:
        return _init_from(args)
    drafting = [flag for flag in ("target", "task", "time", "entity", "name", "out")
                if getattr(args, flag) is not None]
    if drafting:
        raise InvalidInput(f"{', '.join('--' + f for f in drafting)} {'go' if len(drafting) > 1 else 'goes'} "
                           "with --from FILE (drafting a spec from data)")
    with _home(args) as home:
        spec = load_spec(args.spec or bundled_spec_path())
        added = home.add_model(spec, actor="cli")
        print(f"data directory {home.root}")
        print(f"model '{spec.name}' {'registered' if added else 'already registered'} from {spec.path}")
    return 0


def _init_from(args: argparse.Namespace) -> int:
    from appliance.data.drafting import draft_model, write_draft
    from appliance.errors import Conflict
    from appliance.spec import load_spec

    if args.target is None:
        raise InvalidInput("--from needs --target COLUMN: the column the model predicts")
    draft = draft_model(args.source, args.target, args.out or Path.cwd(), time=args.time, entity=args.entity,
                        name=args.name, task=args.task)
    with _home(args) as home:
        known = {m.name: m.spec_path for m in home.registry.models()}
        if draft.name in known:
            raise Conflict(f"model '{draft.name}' is already registered (spec {known[draft.name]}); nothing was "
                           "written — pass --name NAME for a new model")
        for line in draft.assumptions:
            print(f"assumed {line}")
        write_draft(draft)
        print(f"wrote {draft.spec_path} and {draft.contract_path}: read them and edit what the data could not tell")
        spec = load_spec(draft.spec_path)
        home.add_model(spec, actor="cli")
        print(f"data directory {home.root}")
        print(f"model '{spec.name}' registered from {spec.path}; next: `appliance train {spec.name}`")
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
    from appliance.alerts.engine import install as install_alerts
    from appliance.scheduler.scheduler import start_scheduler

    install_alerts()  # every monitor run in this process evaluates the spec's alert rules
    scheduler = start_scheduler(root)  # scheduled monitoring and training, in this process next to the API
    if args.demo:
        from appliance.replay import start_demo

        if example is None:
            raise InvalidInput("nothing is in production to replay traffic against; run `appliance up` without --demo")
        if args.speed < 0:
            raise InvalidInput("--speed must not be negative (0: as fast as the API answers)")
        start_demo(root, example[0], f"http://{shown}:{args.port}", say=_say, speed=args.speed)
    try:
        if sys.stdout.isatty() and not args.headless:
            _serve_under_dashboard(root, args.host, args.port)
        else:
            serve(root, host=args.host, port=args.port)
    finally:
        scheduler.shutdown(wait=False)
    return 0


def _serve_under_dashboard(root: Path, host: str, port: int) -> None:
    """The API on a background thread while the dashboard owns the terminal; quitting it stops both."""
    from appliance.serving.server import BackgroundServer
    from tui.app import run_dashboard
    from tui.data_dir import find_cost

    server = BackgroundServer(root, host, port).start()
    try:
        run_dashboard(root, find_cost(root, None))
    finally:
        print("stopping the API server…", flush=True)
        server.stop()


def _tui(args: argparse.Namespace) -> int:
    from tui.app import run_dashboard
    from tui.data_dir import find_cost

    root = Path(args.home or default_home()).expanduser()
    run_dashboard(root, find_cost(root, args.cost))
    return 0


def _example_request(home) -> tuple[str, dict] | None:
    """A first record of a served model's live data (else its source), as a request body: the entity
    key, the event time and the request-time features (typed as the data contract declares them); the
    rest comes from the online store."""
    from appliance.data.contract import cast_columns
    from appliance.data.declared import model_contract
    from appliance.data.sources import read_source
    from appliance.data.values import json_value

    for summary in home.registry.models():
        if summary.production is None:
            continue
        spec = home.spec(summary.name)
        keys = spec.features
        frame = cast_columns(model_contract(spec), read_source(spec.resolve(spec.data.live or spec.data.source)))
        row = frame.row(0, named=True)
        record = {keys.entity_key: row[keys.entity_key]} if keys.entity_key else {}
        if spec.data.live and isinstance(row.get(keys.event_time), datetime):
            record[keys.event_time] = row[keys.event_time]
        record |= {f.name: row[f.name] for f in keys.request}
        return summary.name, {k: json_value(v) for k, v in record.items()}
    return None


def _train(args: argparse.Namespace) -> int:
    from appliance.training.worker import train_in_worker

    with _home(args) as home:
        home.spec(args.model)  # an unknown model or a bad spec is reported before a worker starts
        outcome = train_in_worker(home.root, args.model, actor="cli", resume=args.resume is not None,
                                  run_id=args.resume or None, retrain=args.retrain, say=_say)
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
        first, second = SUMMARY[home.spec(args.model).target.task]
        rows = []
        for v in home.registry.versions(args.model):
            alias = ("production" if v.version == summary.production
                     else "candidate" if v.version == summary.candidate else "")
            failed = [c["name"] for c in v.gate_report.get("checks", []) if not c["passed"]]
            rows.append((f"v{v.version}", v.status + (f" ({', '.join(failed)})" if failed else ""), alias,
                         f"{v.metrics.get(first, float('nan')):.4f}", f"{v.metrics.get(second, float('nan')):.3f}",
                         v.data_version[:12], v.code_version[:16], v.run_id[:8], _when(v.created_at)))
        _table(("VERSION", "STATUS", "ALIAS", metric_label(first).upper(), metric_label(second).upper(), "DATA",
                "CODE", "RUN", "CREATED"), rows)
    return 0


def _promote(args: argparse.Namespace) -> int:
    with _home(args) as home:
        before = home.registry.alias(args.model, "production")
        v = home.registry.promote(args.model, args.version, actor="cli", reason=args.reason, override=args.override)
        print(f"{v.model}: production is now v{v.version} (was {_v(before)}); a running server swaps "
              "within a second")
        if v.status == "rejected":
            print(f"{v.model}: v{v.version} failed its gates; this override is in the audit log")
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
        outputs = model.predict(records).tolist()
    results = [model.task.answer(output) for output in outputs]  # in the model's task's terms, as the API answers
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


def _retention(args: argparse.Namespace) -> int:
    from appliance.machine.disk import disk_use
    from appliance.retention import apply_retention
    from appliance.settings import load_settings

    home = Path(args.home or default_home())
    if not (home / "metadata.db").exists():
        raise NotFound(f"{home} is not an appliance data directory yet; run `appliance init`")
    policy = load_settings(home).retention
    report = apply_retention(home, policy)
    print(f"policy: {policy.hot_days} days hot in predictions.db, then {policy.archive_days} days as daily "
          "Parquet under archive/predictions/, then deleted")
    print(f"archived {report.archived_rows:,} rows from {len(report.archived_days)} day(s)"
          + (f" ({report.archived_days[0]} … {report.archived_days[-1]})" if report.archived_days else "")
          + f"; deleted {len(report.deleted_days)} archived day(s)")
    use = disk_use(home)
    _table(("PART", "SIZE"), [(p.name, f"{p.bytes / 1e6:,.1f} MB") for p in use.parts]
           + [("total", f"{use.total_bytes / 1e6:,.1f} MB")])
    return 0


def _restore(args: argparse.Namespace) -> int:
    from appliance.backup import restore

    home = args.home or default_home()
    manifest = restore(args.src, home, force=args.force)
    print(f"restored {len(manifest.files)} files from {args.src.resolve()} (taken "
          f"{_when(manifest.created_at)}) into {Path(home).resolve()}")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import DEFAULT_RATE_PER_SECOND, create_key

    with _home(args) as home:
        key, token = create_key(home.conn, args.scope, name=args.name,
                                rate_per_second=args.rate or DEFAULT_RATE_PER_SECOND)
    print(f"created key {key.id} ({', '.join(key.scopes)}, {key.rate_per_second:g} req/s); its token, shown "
          "only now — send it as `Authorization: Bearer TOKEN`:")
    print(token)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import list_keys

    with _home(args) as home:
        keys = list_keys(home.conn)
    _table(("ID", "NAME", "SCOPES", "RATE/S", "CREATED", "REVOKED"),
           [(k.id, k.name, ",".join(k.scopes), f"{k.rate_per_second:g}", _when(k.created_at),
             _when(k.revoked_at) if k.revoked_at else "-") for k in keys])
    if not keys:
        print("no keys yet: predict and feedback are open on loopback only; "
              "create one with `appliance keys create --scope predict`")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import revoke_key

    with _home(args) as home:
        key = revoke_key(home.conn, args.id)
    print(f"revoked key {key.id}; a running server refuses it within a second")
    return 0


def _deploy_start(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with _home(args) as home:
        d = deployments.start(home, args.model, args.strategy, args.version, percent=args.percent,
                              split_key=args.split_key)
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_advance(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with _home(args) as home:
        d = deployments.advance(home, args.model, reason=args.reason)
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_abort(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with _home(args) as home:
        d = deployments.abort(home, args.model, reason=args.reason)
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_status(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments
    from appliance.serving.state import PREDICTIONS_DB
    from storage.prediction_log import PredictionStore

    with _home(args) as home:
        d = deployments.latest(home, args.model)
        if d is None:
            print(f"{args.model}: no deployment yet; start one with `appliance deploy {args.model} start canary "
                  "--version N`")
            return 0
        store = PredictionStore(home.root / PREDICTIONS_DB)
        try:
            body = deployments.report(home, store, d)
        finally:
            store.close()
    print(f"{d.model}: {_deployment_line(d)}")
    print(json.dumps({k: v for k, v in body.items() if k != "deployment"}, indent=2))
    return 0


def _deployment_line(d) -> str:
    """One line saying where a deployment stands."""
    where = {"blue-green": "switched, previous version warm for instant switch back" if d.switched
             else "candidate warm, not yet switched",
             "canary": f"{d.traffic_percent:g} % of traffic on the candidate",
             "shadow": "candidate scores every request off the response path",
             "ab": f"{d.traffic_percent:g} % on the candidate, split by {d.split_key}"}[d.strategy]
    if d.status != "running":
        where = f"{d.status.replace('_', ' ')}: {d.reason}"
    return f"{d.strategy} deployment {d.id} of v{d.candidate_version} against v{d.baseline_version} — {where}"


def _alerts_list(args: argparse.Namespace) -> int:
    from appliance.alerts.records import list_alerts

    with _home(args) as home:
        alerts = list_alerts(home.conn, args.model, include_resolved=args.all)
    if not alerts:
        print("no alerts" if args.all else "no unresolved alerts (--all shows resolved ones)")
        return 0
    _table(("ID", "MODEL", "SEVERITY", "STATUS", "RULE", "TARGET", "COUNT", "LAST SEEN", "MESSAGE"),
           [(str(a.id), a.model, a.severity, a.status, a.rule, a.target, str(a.count), _when(a.last_seen), a.message)
            for a in alerts])
    return 0


def _alerts_show(args: argparse.Namespace) -> int:
    from appliance.alerts.records import alert

    with _home(args) as home:
        a = alert(home.conn, args.id)
    print(f"alert {a.id}: {a.severity} {a.rule} on {a.model} ({a.target}) — {a.status}")
    print(f"  {a.message}; window {a.window_start} .. {a.window_end}")
    print(f"  first seen {_when(a.first_seen)}, last seen {_when(a.last_seen)}, {a.count} time(s)")
    if a.acknowledged_at:
        print(f"  acknowledged by {a.acknowledged_by} at {_when(a.acknowledged_at)}")
    if a.resolved_at:
        print(f"  resolved by {a.resolved_by} at {_when(a.resolved_at)}")
    print(f"  action: {a.action}" + ("" if a.actions or a.action == "log" else " (not started yet)"))
    for act in a.actions:
        print(f"    {act.action} {act.status} at {_when(act.started_at)}: {json.dumps(act.detail)}")
    return 0


def _alerts_ack(args: argparse.Namespace) -> int:
    from appliance.alerts.records import acknowledge

    with _home(args) as home:
        a = acknowledge(home.conn, args.id, actor="cli")
    print(f"alert {a.id} acknowledged")
    return 0


def _alerts_resolve(args: argparse.Namespace) -> int:
    from appliance.alerts.records import resolve

    with _home(args) as home:
        a = resolve(home.conn, args.id, actor="cli")
    print(f"alert {a.id} resolved")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from appliance.replay import replay

    with _home(args) as home:
        home.spec(args.model)  # an unknown model is reported before any traffic
        root = home.root
    days = replay(root, args.model, args.url, speed=args.speed, days=args.days, label_delay_hours=args.label_delay,
                  key=args.key, say=_say)
    _print_open_alerts(root, args.model)
    print(f"replayed {days[-1].predictions if days else 0:,} predictions over {len(days)} day(s)")
    return 0


def _print_open_alerts(root: Path, model: str) -> None:
    from appliance.alerts.records import list_alerts
    from appliance.home import Home

    with Home(root) as home:
        for a in reversed(list_alerts(home.conn, model)):
            print(f"alert {a.id}: {a.severity} {a.rule} ({a.target}) — {a.message}; see `appliance alerts show {a.id}`")


def _machine(args: argparse.Namespace) -> int:
    import msgspec

    from appliance.machine.cost import CostSection, cost_per_hour, load_cost
    from appliance.machine.report import machine_report
    from appliance.machine.snapshot import take_snapshot
    from appliance.settings import load_settings

    home = Path(args.home or default_home()).expanduser()
    cost = load_cost(args.cost) if args.cost else load_settings(home).cost if home.is_dir() else CostSection()
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


def _ingest(args: argparse.Namespace) -> int:
    from appliance.data.declared import check_spec_types, model_contract
    from appliance.data.ingest import ingest

    as_of = _parse_time(args.as_of, "--as-of") if args.as_of else datetime.now(timezone.utc)
    with _home(args) as home:
        spec = home.spec(args.model)
        contract = model_contract(spec)
        check_spec_types(spec, contract)
        report = ingest(home.conn, home.offline, spec.name, contract, args.path, as_of=as_of)
        s = report.snapshot
        print(f"read {report.rows_read:,} rows: {report.accepted:,} accepted, {report.quarantined:,} quarantined")
        print(f"snapshot {s.hash[:12]} {'(new)' if report.new_snapshot else '(identical content: unchanged)'}: "
              f"{s.rows:,} rows, {s.min_event_time} .. {s.max_event_time}")
        for warning in report.warnings:
            print(f"warning: {warning}")
        if report.quarantined:
            print(f"see the quarantined rows with `appliance data quarantine {spec.name}`")
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import list_snapshots, versions_trained_on

    with _home(args) as home:
        home.registry.model(args.model)
        rows = []
        for s in list_snapshots(home.conn, args.model):
            trained = ", ".join(f"v{v}" for _, v in versions_trained_on(home.conn, s.hash, args.model)) or "-"
            rows.append((s.hash[:12], f"{s.rows:,}", f"{s.quarantined:,}", _day(s.min_event_time),
                         _day(s.max_event_time), (s.parent or "-")[:12], _when(s.created_at), trained))
        _table(("SNAPSHOT", "ROWS", "QUARANTINED", "FROM", "TO", "PARENT", "CREATED", "VERSIONS"), rows)
        if not rows:
            print(f"no snapshots yet — run `appliance ingest {args.model} PATH` or `appliance train {args.model}`")
    return 0


def _data_show(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import find_snapshots, versions_trained_on

    with _home(args) as home:
        if args.model is not None:
            home.registry.model(args.model)
        for i, s in enumerate(find_snapshots(home.conn, args.hash, args.model)):  # one per model holding it
            trained = versions_trained_on(home.conn, s.hash, s.model)
            print(("\n" if i else "") +
                  f"snapshot     {s.hash}\nmodel        {s.model}\nrows         {s.rows:,}\n"
                  f"quarantined  {s.quarantined:,}\nevent time   {s.min_event_time} .. {s.max_event_time}\n"
                  f"source       {s.source}\nparent       {s.parent or '-'}\ncreated      {_when(s.created_at)}\n"
                  f"file         {home.offline.root / s.path}\n"
                  f"trained      {', '.join(f'{m} v{v}' for m, v in trained) or 'no version yet'}\nschema")
            for column, kind in s.schema.items():
                print(f"  {column}: {kind}")
    return 0


def _data_diff(args: argparse.Namespace) -> int:
    from appliance.data.snapshots import diff_snapshots, find_snapshot_pair

    with _home(args) as home:
        if args.model is not None:
            home.registry.model(args.model)
        d = diff_snapshots(home.offline, *find_snapshot_pair(home.conn, args.old, args.new, args.model))
        print(f"old {d.old.hash[:12]}: {d.old.rows:,} rows, {d.old.min_event_time} .. {d.old.max_event_time}")
        print(f"new {d.new.hash[:12]}: {d.new.rows:,} rows, {d.new.min_event_time} .. {d.new.max_event_time}")
        print(f"rows {d.new.rows - d.old.rows:+,}; quarantined {d.old.quarantined:,} → {d.new.quarantined:,}")
        for name, kind in d.added_columns.items():
            print(f"+ column {name}: {kind}")
        for name, kind in d.removed_columns.items():
            print(f"- column {name}: {kind}")
        for name, (before, after) in d.retyped_columns.items():
            print(f"~ column {name}: {before} → {after}")
        if d.only_in_old is None:
            print("the schemas differ, so rows are not compared")
        else:
            print(f"rows only in old: {d.only_in_old:,}; only in new: {d.only_in_new:,}")
    return 0


def _data_quarantine(args: argparse.Namespace) -> int:
    import polars as pl

    from appliance.data.quarantine import quarantine

    with _home(args) as home:
        home.registry.model(args.model)
        view = quarantine(home.conn, home.offline, args.model, limit=args.limit, reason=args.reason)
        print(f"{view.rows:,} quarantined rows" + (f" whose reason contains '{args.reason}'" if args.reason else ""))
        if view.rows:
            _table(("COUNT", "REASON"), [(f"{n:,}", reason) for reason, n in view.by_reason])
            with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
                print(view.sample)
    return 0


def _features_materialize(args: argparse.Namespace) -> int:
    from appliance.features.online import materialize_model

    with _home(args) as home:
        spec = home.spec(args.model)
        if spec.features.entity_key is None:
            print(f"model '{spec.name}' has no entity: it keeps no features online, nothing to materialize")
        for r in materialize_model(home, spec):
            print(f"materialized {r.rows:,} entities ({r.with_history:,} with history, newest event "
                  f"{r.as_of or '-'}) into {r.namespace} in {r.seconds:.2f} s")
    return 0


def _features_skew(args: argparse.Namespace) -> int:
    from appliance.features.skew import check_skew

    with _home(args) as home:
        report = check_skew(home, home.spec(args.model), sample=args.sample, seed=args.seed)
    print(f"checked {report.entities:,} entities × {len(report.features)} features as of {report.as_of}: "
          f"{len(report.mismatches)} mismatch(es)")
    if report.ahead:
        print(f"not checked: {report.ahead:,} entities whose rows answered requests moved past the ingested history")
    if report.mismatches:
        _table(("ENTITY", "FEATURE", "ONLINE", "OFFLINE"),
               [(m.entity, m.feature, repr(m.online), repr(m.offline)) for m in report.mismatches[:50]])
        print(f"run `appliance features materialize {args.model}` if data was ingested since the last one")
        return 1
    return 0


def _features_show(args: argparse.Namespace) -> int:
    from appliance.data.declared import entity_key_type
    from appliance.features.online import OnlineFeatures

    with _home(args) as home:
        spec = home.spec(args.model)
        if spec.features.entity_key is None:
            raise InvalidInput(f"model '{spec.name}' has no entity: it keeps no features to show")
        record = {spec.features.entity_key: args.entity}
        if args.at:
            record[spec.features.event_time] = args.at
        online = OnlineFeatures(home.online, spec.name, spec.features, entity_key_type(spec))
        completed = online.complete([record])[0]
    print(json.dumps(completed, indent=2, default=str, ensure_ascii=False))
    return 0


def _parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 time like 2026-10-16T09:30:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _day(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"

def _runs_list(args: argparse.Namespace) -> int:
    from appliance.tracking.queries import list_runs

    with _home(args) as home:
        found = list_runs(home.tracking, args.model, args.limit)
    rows = [(r.id[:8], r.model, r.kind, r.name, r.status, _when(r.started_at), _seconds(r), str(r.children or ""),
             (r.error or "")[:60]) for r in found]
    _table(("RUN", "MODEL", "KIND", "NAME", "STATUS", "STARTED", "SECONDS", "CHILDREN", "ERROR"), rows)
    if not rows:
        print("no runs yet — run `appliance train MODEL`")
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from appliance.errors import NotFound
    from appliance.tracking.queries import run_detail
    from appliance.training.runs import pipeline_run

    with _home(args) as home:
        d = run_detail(home.tracking, args.run_id)
        try:
            stages = pipeline_run(home.conn, d.run.id).stages
        except NotFound:
            stages = []
    r = d.run
    print(f"run {r.id}  {r.model}  {r.kind} '{r.name}'  {r.status}  started {_when(r.started_at)}  {_seconds(r)} s")
    if r.parent_id:
        print(f"parent {r.parent_id}")
    if r.error:
        print(f"error: {r.error}")
    env = d.environment
    print(f"code {r.code_version}  python {env.get('python')}  {env.get('platform')}  cpus {env.get('cpus')}")
    print("packages " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v))
    if d.data:
        print("data " + ", ".join(h[:12] for h in d.data))
    if stages:
        print("\nstages")
        _table(("STAGE", "STATUS", "STARTED", "SECONDS", "ATTEMPTS", "ERROR"),
               [(s.stage, s.status, _when(s.started_at), f"{s.ended_at - s.started_at:.2f}" if s.ended_at else "",
                 str(s.attempts), (s.error or "")[:70]) for s in stages])
    for title, values in (("params", d.params), ("tags", d.tags), ("artifacts", d.artifacts)):
        if values:
            print(f"\n{title}")
            _table(("KEY", "VALUE"), [(k, _short_value(v)) for k, v in values.items()])
    if d.metrics:
        print("\nmetrics (last value of each series)")
        _table(("METRIC", "VALUE", "POINTS"), [(k, _short_value(v), str(d.metric_points[k])) for k, v in d.metrics.items()])
    if d.child_runs:
        print("\nchild runs")
        _table(("RUN", "NAME", "STATUS", "SECONDS"), [(c.id[:8], c.name, c.status, _seconds(c)) for c in d.child_runs])
    return 0


def _runs_compare(args: argparse.Namespace) -> int:
    from appliance.tracking.queries import run_detail

    with _home(args) as home:
        details = [run_detail(home.tracking, prefix) for prefix in args.runs]
    header = ("", *(f"{d.run.id[:8]} {d.run.name}" for d in details))
    rows = [("status", *(d.run.status for d in details))]
    for title, pick in (("param", lambda d: d.params), ("metric", lambda d: d.metrics)):
        keys = sorted({k for d in details for k in pick(d)})
        rows += [(f"{title} {k}", *(_short_value(pick(d).get(k, "-")) for d in details)) for k in keys]
    _table(header, rows)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from appliance.training.reproduce import reproduce

    with _home(args) as home:
        result = reproduce(home, args.model, args.version, say=_say)
    _table(("METRIC", "RECORDED", "REPRODUCED", "DIFFERENCE"),
           [(m.name, f"{m.recorded:.6g}", f"{m.reproduced:.6g}", f"{m.difference:+.3g}") for m in result.metrics])
    if result.identical:
        print(f"{result.model} v{result.version}: identical — same ONNX bytes ({result.reproduced_onnx[:12]}) "
              f"(run {result.run_id[:8]})")
    else:
        print(f"{result.model} v{result.version}: different ONNX bytes ({result.recorded_onnx[:12]} → "
              f"{result.reproduced_onnx[:12]}); largest metric difference {result.max_difference:.3g} "
              f"(run {result.run_id[:8]})")
    return 0


def _register(args: argparse.Namespace) -> int:
    from appliance.training.registration import register_model

    with _home(args) as home:
        result = register_model(home, args.model, onnx=args.onnx, lightgbm=args.lightgbm, eval_data=args.eval,
                                categories=args.categories, reason=args.reason, actor="cli", say=_say)
    for check in result.gates.checks:
        verdict = "n/a" if not check.applicable else "pass" if check.passed else "FAIL"
        print(f"gate {check.name}: {verdict} — {check.detail}")
    v, (what, _, digest) = result.version, result.source.rpartition(" ")
    if result.gates.passed:
        print(f"registered {v.model} v{v.version} from {what} {digest[:12]} as candidate; "
              f"promote it with `appliance promote {v.model} {v.version}`")
        return 0
    print(f"registered {v.model} v{v.version} as REJECTED: it failed its gates and cannot be promoted")
    return 1


def _seconds(run) -> str:
    return f"{run.ended_at - run.started_at:.1f}" if run.ended_at else "…"


def _short_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if len(str(value)) <= 70 else str(value)[:67] + "…"


def _monitor(args: argparse.Namespace) -> int:
    from appliance.monitoring.report import monitor_report
    from appliance.monitoring.store import results

    with _home(args) as home:
        frame = results(home, args.model, since=args.since)
    print("\n".join(monitor_report(frame, args.check)))
    return 0


def _jobs_list(args: argparse.Namespace) -> int:
    from appliance.scheduler.jobs import list_jobs

    with _home(args) as home:
        jobs = list_jobs(home)
    rows = [(j.job, j.model, j.schedule or "manual", _when(j.last.started_at) if j.last else "-",
             j.last.status if j.last else "-", j.next_run.strftime("%Y-%m-%d %H:%M:%S") if j.next_run else "-")
            for j in jobs]
    _table(("job", "model", "schedule", "last run (UTC)", "status", "next run (UTC)"), rows)
    return 0


def _jobs_run(args: argparse.Namespace) -> int:
    from appliance.scheduler.jobs import run_job

    with _home(args) as home:
        root = home.root
        models = [args.model] if args.model else [m.name for m in home.registry.models()]
    failed = 0
    for model in models:
        run = run_job(root, args.job, model)
        seconds = (run.ended_at or run.started_at) - run.started_at
        detail = (run.error or "").splitlines()[0] if run.status == "failed" else \
            ", ".join(f"{k} {v}" for k, v in run.summary.items() if not isinstance(v, dict))
        print(f"{run.job} {model}: {run.status} in {seconds:.1f}s (run {run.id}){': ' + detail if detail else ''}")
        failed += run.status == "failed"
    return 1 if failed else 0
