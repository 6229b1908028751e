"""The command line: `appliance up`, `train`, `models`, `promote`, `rollback`, `predict`, …"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import appliance
from appliance.config import bundled_spec_path, default_home
from appliance.errors import ApplianceError, InvalidInput
from storage.errors import StorageError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``appliance`` command; user errors print one line and exit 1."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "-"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
