"""Training and its records: `train`, `runs list|show|compare`."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from typing import TYPE_CHECKING

from appliance.cli.arguments import Subcommands, add_json, open_home
from appliance.cli.output import plain, print_json, say, table, when

if TYPE_CHECKING:  # the CLI imports the ML stack only inside the commands that use it
    from appliance.registry.registry import ModelVersion
    from appliance.training.runs import PipelineRun
    from appliance.validation.gates import GateReport


def register(commands: Subcommands) -> None:
    train = commands.add(
        "train", _train, "run the training pipeline for a model and register the result", model="a registered model"
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="continue a failed run from the stage that failed (default: the latest run)",
    )
    train.add_argument(
        "--retrain",
        action="store_true",
        help="also learn from the labelled predictions, holding out only the newest days "
        "([training] retrain_eval_days), as an alert's retrain does; with nothing new since "
        "a version trained on the same data, spec and code, it says so and registers nothing",
    )

    runs = commands.add("runs", None, "tracked runs: list, show, compare")
    actions = Subcommands(runs, "ACTION")
    runs_list = actions.add("list", _runs_list, "recent runs, newest first")
    runs_list.add_argument("--model", default=None, help="only this model's runs")
    runs_list.add_argument("--limit", type=int, default=20, help="at most this many runs (default %(default)s)")
    add_json(
        runs_list,
        "the runs, newest first: id, model, name, kind, parent_id, status, started_at, ended_at, code_version, "
        "error, children, progress (how far a running one is) and verdict (its version registered, or rejected)",
    )
    runs_show = actions.add("show", _runs_show, "one run: stages, params, metrics, tags, artifacts, trials")
    runs_show.add_argument("run_id", metavar="RUN", help="run id or a unique prefix of it")
    add_json(
        runs_show,
        "run (as `runs list` gives it), params, metrics (each series' last value), metric_points, tags, "
        "artifacts, environment, data, child_runs and stages (a pipeline run's stages; else empty)",
    )
    runs_compare = actions.add("compare", _runs_compare, "params and final metrics of runs side by side")
    runs_compare.add_argument("runs", nargs="+", metavar="RUN", help="run ids or unique prefixes of them")
    add_json(runs_compare, "a list of the runs as `runs show --json` gives each, without stages")


def _train(args: argparse.Namespace) -> int:
    import uuid

    from appliance.cli.exit_codes import INTERRUPTED
    from appliance.training import runs
    from appliance.training.pipeline import NothingNew, abandon_dead_runs
    from appliance.training.run_lock import model_lock
    from appliance.training.worker import StoppedBySignal, train_in_worker

    resume = args.resume is not None
    with open_home(args) as home:
        home.spec(args.model)  # an unknown model or a bad spec is reported before a worker starts
        if resume:  # which run, named now: a run with nothing to resume is reported before a worker starts too
            # A run whose worker died with its command (kill -9, a reboot) still reads 'running': marked failed
            # first, under the model's lock, as the run itself would before resuming
            with model_lock(home.root, args.model, "resume"):
                abandon_dead_runs(home, args.model, say)
            run_id = runs.resumable_run(home.conn, args.model, args.resume or None).id
        else:
            run_id = uuid.uuid4().hex
            _mention_resumable(home.conn, args.model)
        try:
            outcome = train_in_worker(
                home.root,
                args.model,
                actor="cli",
                resume=resume,
                run_id=run_id if resume else None,
                retrain=args.retrain,
                new_run_id=None if resume else run_id,
                say=say,
                forward_signals=True,
            )
        except StoppedBySignal:  # Ctrl-C (or SIGTERM): the run recorded which and where; say how to go on
            print(_interrupted(home.conn, args.model, run_id), file=sys.stderr)
            return INTERRUPTED
        if isinstance(outcome, NothingNew):  # not an error: the version it names stands for this data
            print(outcome.message)
            return 0
        return report_registered(outcome.version, outcome.gates, took=f" in {outcome.seconds:.1f} s")


def _mention_resumable(conn: sqlite3.Connection, model: str) -> None:
    """One line when the model's latest run ended resumably: a plain `train` starts anew and leaves it be."""
    from appliance.errors import Conflict, NotFound
    from appliance.training import runs

    try:
        earlier = runs.resumable_run(conn, model, None)
    except (NotFound, Conflict):  # none, or the latest one succeeded (or still runs)
        return
    ended = "stopped" if "TrainingStopped" in (earlier.error or "") else "failed"
    say(
        f"run {earlier.id[:8]} {ended} in stage {_failed_stage(earlier)} and can still be continued with "
        f"`appliance train {model} --resume`; this starts a new run"
    )


def _interrupted(conn: sqlite3.Connection, model: str, run_id: str) -> str:
    from appliance.errors import NotFound
    from appliance.training import runs

    try:
        run = runs.pipeline_run(conn, run_id)
    except NotFound:  # stopped while its worker was starting
        return f"interrupted: before run {run_id[:8]} began; nothing was recorded"
    return (
        f"interrupted: run {run_id[:8]} stopped in stage {_failed_stage(run)}; "
        f"continue it with `appliance train {model} --resume`"
    )


def _failed_stage(run: PipelineRun) -> str:
    return next((s.stage for s in run.stages if s.status == "failed"), "-")


def report_registered(v: ModelVersion, gates: GateReport, source: str = "", took: str = "") -> int:
    """Each gate's verdict, then what the version was registered as and what to do next; 1 if it was rejected.
    `train` and `register` (a model trained outside) end alike: ``source`` says where an outside model came
    from, ``took`` how long training took."""
    for check in gates.checks:
        print(f"gate {check.name}: {check.verdict} — {check.detail}")
    if gates.passed:
        print(
            f"registered {v.model} v{v.version}{source} as candidate{took}; "
            f"promote it with `appliance promote {v.model} {v.version}`"
        )
        return 0
    print(f"registered {v.model} v{v.version} as REJECTED: it failed its gates and cannot be promoted")
    return 1


def _runs_list(args: argparse.Namespace) -> int:
    from appliance.tracking.queries import list_runs

    with open_home(args) as home:
        found = list_runs(home.tracking, args.model, args.limit)
    if args.json:
        print_json(found)
        return 0
    rows = [(*r.cells(when), str(r.children or ""), (r.error or "")[:60]) for r in found]
    table(("RUN", "MODEL", "KIND", "NAME", "STATUS", "STARTED", "SECONDS", "CHILDREN", "ERROR"), rows)
    if not rows:
        print("no runs yet — run `appliance train MODEL`")
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from appliance.errors import NotFound
    from appliance.tracking.queries import run_detail
    from appliance.training.runs import pipeline_run

    with open_home(args) as home:
        d = run_detail(home.tracking, args.run_id)
        try:
            stages = pipeline_run(home.conn, d.run.id).stages
        except NotFound:
            stages = []
    if args.json:
        print_json(plain(d) | {"stages": plain(stages)})
        return 0
    r = d.run
    print(f"run {r.id}  {r.model}  {r.kind} '{r.name}'  {r.outcome}  started {when(r.started_at)}  {r.took()} s")
    if r.parent_id:
        print(f"parent {r.parent_id}")
    if r.error:
        print(f"error: {r.error}")
    if r.status == "skipped":  # a retrain with nothing new to learn from: why, as it said when it ended
        print(f"skipped: {d.tags.get('outcome', 'nothing new to learn from')}")
    env = d.environment
    print(f"code {r.code_version}  python {env.get('python')}  {env.get('platform')}  cpus {env.get('cpus')}")
    print("packages " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v))
    if d.data:
        print("data " + ", ".join(h[:12] for h in d.data))
    if stages:
        print("\nstages")
        table(
            ("STAGE", "STATUS", "STARTED", "SECONDS", "ATTEMPTS", "ERROR"),
            [
                (
                    s.stage,
                    s.status,
                    when(s.started_at),
                    f"{s.ended_at - s.started_at:.2f}" if s.ended_at else "",
                    str(s.attempts),
                    (s.error or "")[:70],
                )
                for s in stages
            ],
        )
    for title, values in (("params", d.params), ("tags", d.tags), ("artifacts", d.artifacts)):
        if values:
            print(f"\n{title}")
            table(("KEY", "VALUE"), [(k, _short_value(v)) for k, v in values.items()])
    if d.metrics:
        print("\nmetrics (last value of each series)")
        table(
            ("METRIC", "VALUE", "POINTS"), [(k, _short_value(v), str(d.metric_points[k])) for k, v in d.metrics.items()]
        )
    if d.child_runs:
        print("\nchild runs")
        table(("RUN", "NAME", "STATUS", "SECONDS"), [(c.id[:8], c.name, c.outcome, c.took()) for c in d.child_runs])
    return 0


def _runs_compare(args: argparse.Namespace) -> int:
    from appliance.tracking.queries import run_detail

    with open_home(args) as home:
        details = [run_detail(home.tracking, prefix) for prefix in args.runs]
    if args.json:
        print_json(details)
        return 0
    header = ("", *(f"{d.run.id[:8]} {d.run.name}" for d in details))
    rows = [("status", *(d.run.outcome for d in details))]
    for title, pick in (("param", lambda d: d.params), ("metric", lambda d: d.metrics)):
        keys = sorted({k for d in details for k in pick(d)})
        rows += [(f"{title} {k}", *(_short_value(pick(d).get(k, "-")) for d in details)) for k in keys]
    table(header, rows)
    return 0


def _short_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if len(str(value)) <= 70 else str(value)[:67] + "…"
