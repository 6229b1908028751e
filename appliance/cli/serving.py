"""Serving: `up`, `predict`, `replay`, `deploy MODEL start|advance|abort|status`, `keys create|list|revoke`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path

from appliance.cli.arguments import Subcommands, add_json, home_root, open_home
from appliance.cli.output import plain, print_json, say, table, when
from appliance.config import bundled_spec_path
from appliance.errors import InvalidInput, Unavailable

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
MAX_WORKERS_ASKED = 64  # as [serving] workers allows


def register(commands: Subcommands) -> None:
    up = commands.add("up", _up, "train what is needed, promote it, and serve the API")
    # Each default is its environment variable when set (the service's /etc/appliance/appliance.env sets them),
    # read when `up` runs (_listen_settings): the parser, and so the CLI reference, never holds this machine's.
    up.add_argument(
        "--spec",
        type=Path,
        nargs="+",
        default=None,
        help="model specs to register and bring up, with every model the data directory has (default: "
        "$APPLIANCE_SPECS, files separated by ':'; else, in a data directory with no model, the bundled sample)",
    )
    up.add_argument(
        "--host",
        default=None,
        help=f"the address to listen on (default: $APPLIANCE_HOST, else {DEFAULT_HOST}; 0.0.0.0 for every interface)",
    )
    up.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"the port to listen on (default: $APPLIANCE_PORT, else {DEFAULT_PORT})",
    )
    up.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="API worker processes sharing the port (default: $APPLIANCE_WORKERS, else appliance.toml's "
        "[serving] workers, else the cores left after 2 for training and monitoring, 1 to 8)",
    )
    up.add_argument("--headless", action="store_true", help="no dashboard; what systemd runs")
    up.add_argument("--demo", action="store_true", help="once serving, replay the sample's live days through the API")
    _add_speed(up, "--demo: ")

    predict = commands.add(
        "predict",
        _predict,
        "score records with a model's production version, in process",
        model="a model with a version in production",
    )
    predict.add_argument("--json", required=True, dest="payload", help="one record as a JSON object, or a list of them")

    replay = commands.add(
        "replay",
        _replay,
        "send a model's live data through the running API, labels later, monitoring at each day boundary (the demo)",
        model="a model whose spec names live data ([data] live)",
    )
    replay.add_argument("--url", default="http://127.0.0.1:8000", help="the running API (default %(default)s)")
    _add_speed(replay)
    replay.add_argument("--days", type=int, default=None, help="replay only the first N days")
    replay.add_argument(
        "--label-delay",
        type=float,
        default=2.0,
        metavar="HOURS",
        help="labels arrive this many event-hours after their prediction (default 2)",
    )
    replay.add_argument("--key", default=None, help="an API key with predict and feedback scopes, if keys exist")

    deploy = commands.add(
        "deploy",
        None,
        "deploy a candidate: blue-green, canary, shadow or A/B; advance, abort, status",
        model="the model whose candidate is deployed",
    )
    steps = Subcommands(deploy, "ACTION", required=False)
    begin = steps.add("start", _deploy_start, "start deploying a version next to production")
    begin.add_argument(
        "strategy",
        choices=("blue-green", "canary", "shadow", "ab"),
        help="blue-green: warm, then switch all at once; canary: a growing share of traffic; "
        "shadow: scores every request off the response path; ab: a fixed split by a field",
    )
    begin.add_argument("--version", type=int, required=True, help="the candidate version")
    begin.add_argument("--percent", type=float, default=None, help="A/B: the candidate's share (default 50)")
    begin.add_argument(
        "--key",
        dest="split_key",
        default=None,
        help="A/B: the request field to split by (default: the spec's deployment.ab_key)",
    )
    forward = steps.add(
        "advance",
        _deploy_advance,
        "next canary step, blue-green switch, or promote (a shadow or "
        "A/B candidate, or releasing a blue-green standby, needs its evidence first)",
    )
    forward.add_argument("--reason", default="", help="why (goes into the audit log)")
    forward.add_argument(
        "--force", action="store_true", help="advance without the evidence the step needs; takes a --reason, audited"
    )
    steps.add("abort", _deploy_abort, "stop; all traffic back to the baseline").add_argument(
        "--reason", default="", help="why (goes into the audit log)"
    )
    add_json(
        steps.add("status", _deploy_status, "the deployment and what it has shown so far"),
        "deployment (the latest, null if none: strategy, versions, status, traffic_percent, times), predictions per "
        "arm, and the strategy's evidence: step (canary), ab or shadow",
    )

    keys = commands.add("keys", None, "API keys: create, list, revoke")
    actions = Subcommands(keys, "ACTION", required=False)
    create = actions.add("create", _keys_create, "create a key (its token is shown once)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=("predict", "feedback", "admin"),
        help="what the key may call (repeat for several; admin may call everything)",
    )
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument("--rate", type=float, default=None, help="requests per second allowed (default 1000)")
    add_json(
        actions.add("list", _keys_list, "every key and whether it is revoked"),
        "the keys (never their tokens, nor their hashes): id, name, scopes, rate_per_second, created_at, revoked_at",
    )
    revoke = actions.add("revoke", _keys_revoke, "revoke a key; a running server refuses it within a second")
    revoke.add_argument("id", help="the key's id (see `appliance keys list`)")


def _environment_specs() -> list[Path] | None:
    """$APPLIANCE_SPECS: spec files separated by ':', as PATH separates folders (empty entries are skipped)."""
    paths = [Path(part) for part in os.environ.get("APPLIANCE_SPECS", "").split(":") if part.strip()]
    return paths or None


def _port(text: str) -> int:
    """A TCP port from --port; anything else is refused before any work starts."""
    if not _is_port(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def _is_port(text: str) -> bool:
    return text.strip().isdigit() and 0 < int(text) < 65536


def _workers(text: str) -> int:
    """A worker count from --workers; anything else is refused before any work starts."""
    if not _is_workers(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to {MAX_WORKERS_ASKED}")
    return int(text)


def _is_workers(text: str) -> bool:
    return text.strip().isdigit() and 0 < int(text) <= MAX_WORKERS_ASKED


def _listen_settings(args: argparse.Namespace) -> None:
    """Fill in --host, --port and --spec left out from their environment variables, else the defaults;
    --workers from $APPLIANCE_WORKERS (left None without it: the data directory's settings decide, in `up`)."""
    args.host = args.host or os.environ.get("APPLIANCE_HOST") or DEFAULT_HOST
    if args.port is None:
        text = os.environ.get("APPLIANCE_PORT", "").strip()  # empty, as a commented-out line leaves it: the default
        if text and not _is_port(text):
            raise InvalidInput(
                f"APPLIANCE_PORT={text!r} is not a port number from 1 to 65535; fix it in the environment "
                "(the service's: /etc/appliance/appliance.env) or pass --port"
            )
        args.port = int(text) if text else DEFAULT_PORT
    args.spec = args.spec or _environment_specs()
    if args.workers is None:
        text = os.environ.get("APPLIANCE_WORKERS", "").strip()
        if text and not _is_workers(text):
            raise InvalidInput(
                f"APPLIANCE_WORKERS={text!r} is not a number of workers from 1 to {MAX_WORKERS_ASKED}; fix it in the "
                "environment (the service's: /etc/appliance/appliance.env) or pass --workers"
            )
        args.workers = int(text) if text else None


def _up(args: argparse.Namespace) -> int:
    from appliance.cli.up_lock import serving_lock

    _listen_settings(args)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    api = f"http://{shown}:{args.port}"
    _refuse_a_taken_port(args.host, args.port)  # before the data directory is made, or anything trains
    with serving_lock(home_root(args, must_exist=False), api):  # one `up` per data directory
        _bring_up_and_serve(args, api)
    return 0


def _bring_up_and_serve(args: argparse.Namespace, api: str) -> None:
    from appliance.bring_up import bring_up
    from appliance.serving.server import serve

    with open_home(args, must_exist=False) as home:
        print(f"data directory {home.root}")
        specs = args.spec or ([bundled_spec_path()] if not home.registry.models() else [])
        bring_up(home, specs, say)
        root = home.root
        example = _example_request(home)
        workers = args.workers or _settled_workers(root)
    dashboard = sys.stdout.isatty() and not args.headless
    # Under the dashboard, what is said from here on goes to its log pane as well: the terminal's copy is hidden
    # by the dashboard until it quits, and anything written to the terminal while it runs lands over it.
    feed = _dashboard_feed() if dashboard else None
    narrate = feed.say if feed else say
    for line in _serving_lines(api, example, workers):
        say(line)
        if feed:
            feed.say(line)
    from appliance.scheduler.scheduler import start_scheduler

    scheduler = start_scheduler(root)  # scheduled monitoring and training, in this process next to the API
    if args.demo:
        from appliance.replay import start_demo

        if example is None:
            raise InvalidInput("nothing is in production to replay traffic against; run `appliance up` without --demo")
        if args.speed < 0:
            raise InvalidInput("--speed must not be negative (0: as fast as the API answers)")
        start_demo(root, example[0], api, say=narrate, speed=args.speed)
    try:
        if feed:
            _serve_under_dashboard(root, args.host, args.port, feed, api, workers)
        elif workers > 1:
            from appliance.serving.workers import serve_workers

            serve_workers(root, args.host, args.port, workers)
        else:
            serve(root, host=args.host, port=args.port)
    finally:
        scheduler.shutdown(wait=False)


def _settled_workers(root: Path) -> int:
    """The data directory's [serving] workers, else the default for this machine's cores."""
    from appliance.serving.workers import default_workers
    from appliance.settings import load_settings

    return load_settings(root).serving.workers or default_workers()


def _add_speed(parser: argparse.ArgumentParser, lead: str = "") -> None:
    """The pace of a replay of live data, the demo's (`up --demo`) or `replay`'s."""
    parser.add_argument(
        "--speed",
        type=float,
        default=7200.0,
        help=f"{lead}event-seconds per wall-second (default %(default)g: a day in 12 s; 0: as fast as possible)",
    )


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Refuse, before bring-up (which may train for minutes), a port another process listens on: the server
    would find out only when it binds, after telling where to send requests — to that other process."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise InvalidInput(f"--host {host} is not an address this machine can listen on ({e.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        # as the server binds: a connection of an earlier run still closing (TIME_WAIT) does not hold the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise Unavailable(
                    f"port {port} on {host} is in use (another appliance?); pick another with --port"
                ) from None
            raise InvalidInput(
                f"cannot listen on {host} port {port} ({e.strerror}); pick another --host or --port"
            ) from None


def _serving_lines(api: str, example: tuple[str, dict] | None, workers: int) -> list[str]:
    """Where the API answers, and a request to try on it."""
    by = f" with {workers} worker processes" if workers > 1 else ""
    lines = [f"serving on {api}{by} (Ctrl-C stops)"]
    if example:
        name, record = example
        url = f"{api}/v1/models/{name}/predict"
        lines += [
            "try:",
            f"  curl -s -X POST {url} -H 'content-type: application/json' -d {shlex.quote(json.dumps(record))}",
        ]
    return lines


def _dashboard_feed():
    from tui.log_pane import LogFeed

    return LogFeed()


def _serve_under_dashboard(root: Path, host: str, port: int, feed, api: str, workers: int) -> None:
    """The API on a background thread (or its workers) while the dashboard owns the terminal; quitting it stops
    both."""
    from appliance.serving.server import BackgroundServer
    from appliance.serving.workers import Supervisor
    from tui.app import run_dashboard
    from tui.data_dir import find_cost

    server = (
        Supervisor(root, host, port, workers).start() if workers > 1 else BackgroundServer(root, host, port).start()
    )
    try:
        run_dashboard(root, find_cost(root, None), feed=feed, api_url=api)
    finally:
        print("stopping the API server…", flush=True)
        server.stop()


def _example_request(home) -> tuple[str, dict] | None:
    """The first served model, with a request body for it (``_example_record``)."""
    for summary in home.registry.models():
        if summary.production is not None:
            return summary.name, _example_record(home, summary.name)
    return None


def _example_record(home, model: str) -> dict:
    """A first record of the model's live data (else its source), as a request body: the entity key, the
    event time and the request-time features (typed as the data contract declares them); the rest comes
    from the online store."""
    from appliance.data.contract import cast_columns
    from appliance.data.declared import model_contract
    from appliance.data.sources import read_source
    from appliance.data.values import json_value

    spec = home.spec(model)
    keys = spec.features
    frame = cast_columns(model_contract(spec), read_source(spec.resolve(spec.data.live or spec.data.source)))
    row = frame.row(0, named=True)
    record = {keys.entity_key: row[keys.entity_key]} if keys.entity_key else {}
    if spec.data.live and isinstance(row.get(keys.event_time), datetime):
        record[keys.event_time] = row[keys.event_time]
    record |= {f.name: row[f.name] for f in keys.request}
    return {k: json_value(v) for k, v in record.items()}


def _record_hint(args: argparse.Namespace) -> str:
    """The shape --json takes for the model named: its first two fields, valued as its data has them."""
    from appliance.errors import ApplianceError

    try:
        with open_home(args) as home:
            record = _example_record(home, args.model)
    except ApplianceError:
        return '{"FIELD": VALUE, ...}'  # an unknown model, or its data unreadable: the command says so next
    return (
        "{"
        + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v)}" for k, v in list(record.items())[:2])
        + ", ...}"
    )


def _predict(args: argparse.Namespace) -> int:
    from appliance.serving.models import load_production

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"--json is not valid JSON ({e}); pass e.g. --json '{_record_hint(args)}'") from None
    single = isinstance(payload, dict)
    records = [payload] if single else payload
    if not isinstance(records, list) or not records:
        raise InvalidInput("--json must be a record object or a non-empty list of them")
    with open_home(args) as home:
        model = load_production(home, args.model)
        outputs = model.predict(records).tolist()
    results = [model.task.answer(output) for output in outputs]  # in the model's task's terms, as the API answers
    body = {"model": model.name, "version": model.version}
    body |= results[0] if single else {"predictions": results}
    print(json.dumps(body))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from appliance.replay import replay

    with open_home(args) as home:
        home.spec(args.model)  # an unknown model is reported before any traffic
        root = home.root
    days = replay(
        root,
        args.model,
        args.url,
        speed=args.speed,
        days=args.days,
        label_delay_hours=args.label_delay,
        key=args.key,
        say=say,
    )
    _print_open_alerts(root, args.model)
    print(f"replayed {days[-1].predictions if days else 0:,} predictions over {len(days)} day(s)")
    return 0


def _print_open_alerts(root: Path, model: str) -> None:
    from appliance.alerts.records import list_alerts
    from appliance.home import Home

    with Home(root) as home:
        for a in reversed(list_alerts(home.conn, model)):
            print(f"alert {a.id}: {a.severity} {a.rule} ({a.target}) — {a.message}; see `appliance alerts show {a.id}`")


def _deploy_start(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with open_home(args) as home:
        d = deployments.start(
            home, args.model, args.strategy, args.version, percent=args.percent, split_key=args.split_key
        )
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_advance(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with open_home(args) as home:
        d = deployments.advance(home, args.model, reason=args.reason, force=args.force)
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_abort(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments

    with open_home(args) as home:
        d = deployments.abort(home, args.model, reason=args.reason)
    print(f"{d.model}: {_deployment_line(d)}")
    return 0


def _deploy_status(args: argparse.Namespace) -> int:
    from appliance.deployment import deployments
    from storage.prediction_log import PredictionStore

    with open_home(args) as home:
        d = deployments.latest(home, args.model)
        if d is None and args.json:
            print_json({"deployment": None})
            return 0
        if d is None:
            print(
                f"{args.model}: no deployment yet; start one with `appliance deploy {args.model} start canary "
                "--version N`"
            )
            return 0
        store = PredictionStore(home.layout.predictions_db)
        try:
            body = deployments.report(home, store, d)
        finally:
            store.close()
    if args.json:
        print_json(body | {"deployment": d})
        return 0
    print(f"{d.model}: {_deployment_line(d)}")
    print(json.dumps({k: v for k, v in body.items() if k != "deployment"}, indent=2))
    return 0


def _deployment_line(d) -> str:
    """One line saying where a deployment stands."""
    where = {
        "blue-green": "switched, previous version warm for instant switch back"
        if d.switched
        else "candidate warm, not yet switched",
        "canary": f"{d.traffic_percent:g} % of traffic on the candidate",
        "shadow": "candidate scores every request off the response path",
        "ab": f"{d.traffic_percent:g} % on the candidate, split by {d.split_key}",
    }[d.strategy]
    if d.status != "running":
        where = f"{d.status.replace('_', ' ')}: {d.reason}"
    return f"{d.strategy} deployment {d.id} of v{d.candidate_version} against v{d.baseline_version} — {where}"


def _keys_create(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import DEFAULT_RATE_PER_SECOND, create_key, list_keys

    with open_home(args) as home:
        first = not list_keys(home.conn)  # revoked ones count: open access ends with the first key ever made
        key, token = create_key(
            home.conn, args.scope, name=args.name, rate_per_second=args.rate or DEFAULT_RATE_PER_SECOND
        )
    if first:  # on stderr: the token stays the last line a script reads
        print(
            "note: the appliance's first key ends open access: from now on every route but /healthz and /readyz "
            "needs a key, from loopback too (a running server applies it within a second); give one to each "
            "client, `replay --key` and the metrics scraper",
            file=sys.stderr,
        )
    print(
        f"created key {key.id} ({', '.join(key.scopes)}, {key.rate_per_second:g} req/s); its token, shown "
        "only now — send it as `Authorization: Bearer TOKEN`:"
    )
    print(token)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import list_keys

    with open_home(args) as home:
        keys = list_keys(home.conn)
    if args.json:
        print_json([{k: v for k, v in plain(key).items() if k != "secret_sha256"} for key in keys])
        return 0
    table(
        ("ID", "NAME", "SCOPES", "RATE/S", "CREATED", "REVOKED"),
        [
            (
                k.id,
                k.name,
                ",".join(k.scopes),
                f"{k.rate_per_second:g}",
                when(k.created_at),
                when(k.revoked_at) if k.revoked_at else "-",
            )
            for k in keys
        ],
    )
    if not keys:
        print(
            "no keys yet: predict and feedback are open on loopback only; "
            "create one with `appliance keys create --scope predict`"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from appliance.gateway.keys import revoke_key

    with open_home(args) as home:
        key = revoke_key(home.conn, args.id)
    print(f"revoked key {key.id}; a running server refuses it within a second")
    return 0
