"""Watching what runs: `monitor`, `alerts list|show|ack|resolve`, `jobs list|run`, `machine`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.cli.arguments import Subcommands, add_json, home_root, open_home
from appliance.cli.output import print_json, say, table, when


def register(commands: Subcommands) -> None:
    monitor = commands.add(
        "monitor", _monitor, "a model's monitoring results per event-time window", model="a registered model"
    )
    monitor.add_argument(
        "--check",
        default=None,
        choices=("quality", "drift", "performance", "estimated", "serving", "machine", "pipeline"),
        help="one check in detail (default: a line per window)",
    )
    monitor.add_argument("--since", default=None, help="windows starting on or after this date (2026-10-20)")
    add_json(
        monitor,
        "the stored results of every check, or of --check's alone (performance without estimated): each with "
        "model, version, window_start, window_end, check, feature, method, value, threshold, rows, alert and "
        "computed_at",
    )

    alerts = commands.add("alerts", _alerts_list, "alerts raised by the monitoring rules: list, show, ack, resolve")
    actions = Subcommands(alerts, "ACTION", required=False)
    alerts_list = actions.add("list", _alerts_list, "unresolved alerts, newest first")
    for sub in (alerts, alerts_list):  # a bare `appliance alerts` lists too, with the same filters
        sub.add_argument("--model", default=None, help="only this model's alerts")
        sub.add_argument("--all", action="store_true", help="resolved alerts too")
        add_json(sub, "the alerts, newest first, as `alerts show --json` gives each")
    by_id = {
        action: actions.add(action, run, text)
        for action, run, text in (
            ("show", _alerts_show, "one alert with the actions it took and their outcomes"),
            ("ack", _alerts_ack, "acknowledge an alert: someone is on it"),
            ("resolve", _alerts_resolve, "resolve an alert; if its rule fires again, a new one opens"),
        )
    }
    for sub in by_id.values():
        sub.add_argument("id", type=int, help="the alert's number (see `appliance alerts`)")
    add_json(
        by_id["show"],
        "id, rule, model, target, severity, action, status, message, value, threshold, window_start, window_end, "
        "count, first_seen, last_seen, acknowledged_by/_at, resolved_by/_at and actions (each with its status, "
        "started_at, ended_at and detail)",
    )

    jobs = commands.add("jobs", None, "scheduled jobs: list them, or run one now")
    actions = Subcommands(jobs, "ACTION", required=False)
    add_json(
        actions.add("list", _jobs_list, "every job, its schedule, last and next run"),
        "the jobs: job, model, schedule (null: manual), last (its run: started_at, ended_at, status, error, "
        "summary, trigger) and next_run",
    )
    job_run = actions.add("run", _jobs_run, "run a job now, in this process (monitor, train)")
    job_run.add_argument("job", help="monitor or train")
    job_run.add_argument("model", nargs="?", default=None, help="default: every model")

    machine = commands.add("machine", _machine, "CPU, memory, GPUs, disk use of the data directory, cost per hour")
    machine.add_argument(
        "--cost",
        type=Path,
        default=None,
        help="a TOML file with a [cost] section (electricity price, hardware amortization)",
    )
    add_json(machine, "snapshot (CPU, memory, GPUs, disk use per part), cost (the [cost] section) and cost_per_hour")


def _monitor(args: argparse.Namespace) -> int:
    from appliance.monitoring.report import monitor_report
    from appliance.monitoring.store import failing, results

    with open_home(args) as home:
        frame = results(home, args.model, check=args.check if args.json else None, since=args.since)
        broken = failing(home, args.model)
        # the text table marks windows too small to be judged (the JSON has the rows: no spec read for it)
        least = None if args.json else home.spec(args.model).monitoring.min_window_rows
    if broken is not None:  # the results below stopped at that run: say so before them
        print(f"warning: {broken}", file=sys.stderr)
    if args.json:
        import polars as pl

        # computed_at is Unix seconds: a time, as every time in a document
        print_json(frame.with_columns((pl.col("computed_at") * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC"))))
        return 0
    print("\n".join(monitor_report(frame, args.check, args.model, min_window_rows=least)))
    return 0


def _alerts_list(args: argparse.Namespace) -> int:
    from appliance.alerts.records import list_alerts

    with open_home(args) as home:
        alerts = list_alerts(home.conn, args.model, include_resolved=args.all)
    if args.json:
        print_json(alerts)
        return 0
    if not alerts:
        print("no alerts" if args.all else "no unresolved alerts (--all shows resolved ones)")
        return 0
    table(
        ("ID", "MODEL", "SEVERITY", "STATUS", "RULE", "TARGET", "COUNT", "LAST SEEN", "MESSAGE"),
        [
            (str(a.id), a.model, a.severity, a.status, a.rule, a.target, str(a.count), when(a.last_seen), a.message)
            for a in alerts
        ],
    )
    return 0


def _alerts_show(args: argparse.Namespace) -> int:
    from appliance.alerts.records import alert

    with open_home(args) as home:
        a = alert(home.conn, args.id)
    if args.json:
        print_json(a)
        return 0
    print(f"alert {a.id}: {a.severity} {a.rule} on {a.model} ({a.target}) — {a.status}")
    print(f"  {a.message}; window {a.window_start} .. {a.window_end}")
    print(f"  first seen {when(a.first_seen)}, last seen {when(a.last_seen)}, {a.count} time(s)")
    if a.acknowledged_at:
        print(f"  acknowledged by {a.acknowledged_by} at {when(a.acknowledged_at)}")
    if a.resolved_at:
        print(f"  resolved by {a.resolved_by} at {when(a.resolved_at)}")
    print(f"  action: {a.action}" + ("" if a.actions or a.action == "log" else " (not started yet)"))
    for act in a.actions:
        print(f"    {act.action} {act.status} at {when(act.started_at)}: {json.dumps(act.detail)}")
    return 0


def _alerts_ack(args: argparse.Namespace) -> int:
    from appliance.alerts.records import acknowledge

    with open_home(args) as home:
        a = acknowledge(home.conn, args.id, actor="cli")
    print(f"alert {a.id} acknowledged")
    return 0


def _alerts_resolve(args: argparse.Namespace) -> int:
    from appliance.alerts.records import resolve

    with open_home(args) as home:
        a = resolve(home.conn, args.id, actor="cli")
    print(f"alert {a.id} resolved")
    return 0


def _jobs_list(args: argparse.Namespace) -> int:
    from appliance.scheduler.jobs import list_jobs

    with open_home(args) as home:
        jobs = list_jobs(home)
    if args.json:
        print_json(jobs)
        return 0
    rows = [
        (
            j.job,
            j.model,
            j.schedule or "manual",
            when(j.last.started_at) if j.last else "-",
            j.last.status if j.last else "-",
            j.next_run.strftime("%Y-%m-%d %H:%M:%S") if j.next_run else "-",
        )
        for j in jobs
    ]
    table(("job", "model", "schedule", "last run (UTC)", "status", "next run (UTC)"), rows)
    return 0


def _jobs_run(args: argparse.Namespace) -> int:
    from appliance.alerts.actions import finish_actions
    from appliance.scheduler.jobs import run_job

    with open_home(args) as home:
        root = home.root
        models = [args.model] if args.model else [m.name for m in home.registry.models()]
    failed = 0
    for model in models:
        run = run_job(root, args.job, model)
        seconds = (run.ended_at or run.started_at) - run.started_at
        detail = (
            (run.error or "").splitlines()[0]
            if run.status == "failed"
            else ", ".join(_summary_item(k, v) for k, v in run.summary.items() if not isinstance(v, dict))
        )
        print(f"{run.job} {model}: {run.status} in {seconds:.1f}s (run {run.id}){': ' + detail if detail else ''}")
        failed += run.status == "failed"
    finish_actions(say)  # a monitor run's alerts may have started a retrain on this process's threads
    return 1 if failed else 0


def _machine(args: argparse.Namespace) -> int:
    from appliance.machine.cost import CostSection, cost_per_hour, load_cost
    from appliance.machine.report import machine_report
    from appliance.machine.snapshot import take_snapshot
    from appliance.settings import load_settings

    home = home_root(args, must_exist=False)  # it reports on the machine, with or without a data directory
    cost = load_cost(args.cost) if args.cost else load_settings(home).cost if home.is_dir() else CostSection()
    snapshot = take_snapshot(home if home.is_dir() else None)  # reading never creates the data directory
    if args.json:
        print_json({"snapshot": snapshot, "cost": cost, "cost_per_hour": cost_per_hour(snapshot, cost)})
    else:
        print("\n".join(machine_report(snapshot, cost, str(home))))
    return 0


def _summary_item(key: str, value: object) -> str:
    """One figure of a job's summary as a person reads it: 'alerts fired 3, 7' or 'alerts fired none', not a
    Python list."""
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value) or "none"
    return f"{key.replace('_', ' ')} {value}"
