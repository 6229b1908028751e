"""Benchmark: serving a binary, a multiclass and a regression model side by side, the binary one the yardstick.

One data directory holds one model of each task, trained, promoted and materialized by the CLI in this
process (the test suite's data sets: ``loans`` from ``tests/own_data.py``, LightGBM, no entity;
``triage`` — support tickets, four classes — and ``eta`` — delivery minutes, with string courier keys and
online features — from ``tests/task_data.py``, LightGBM). One appliance server (uvicorn, its own process,
an unlimited predict key) serves all three; single-row predict requests, ~2000 per model built from its
live file as ``appliance up`` builds its example (entity key, event time, request-time features), go to
each model in turn at concurrency 1 and 8, in alternating order over rounds, best round kept.
Printed per task: throughput, p50 and p99 latency and the server's CPU time per request (all its threads
and its prediction log's writer), then each as a RATIO against the binary model at the same concurrency
in the same run (throughput drifts with other load on a shared machine; the ratios much less). Also each
version's headline metrics and its gate's ``onnx_parity`` and ``latency_p99`` values from the registry.

    python scripts/bench/tasks.py [--seconds 3] [--trees N] [--workdir /tmp/bench-tasks]

``--trees``: boosting rounds of all three models (default: their specs' own, 40 and 60); a reused
``--workdir`` keeps the models it has.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import msgspec
from load import LoadResult, Server, bench_arguments, encode_post, loader_processes, run_load
from own_data import write_loans
from task_data import write_deliveries, write_tickets

ROUNDS = 2
CONCURRENCIES = (1, 8)
REQUESTS = 2000
# task, model, writer, source to ingest, live days so that the live file has more than REQUESTS rows
# (loans: 250 a day; the others 400 a day); the training days are the writers' defaults.
MODELS = (
    ("binary", "loans", write_loans, "applications.csv", 9),
    ("multiclass", "triage", write_tickets, "tickets.csv", 6),
    ("regression", "eta", write_deliveries, "history.parquet", 6),
)


def _cli(home_dir: Path, *args: str) -> str:
    """One CLI command in this process; its output, shown only when it fails."""
    from appliance.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--home", str(home_dir), *args])
    if code != 0:
        print(out.getvalue(), end="")
        raise SystemExit(f"`appliance {' '.join(args)}` failed ({code})")
    return out.getvalue()


def trained_home(folder: Path, trees: int | None) -> Path:
    """The data directory with the three models trained, v1 promoted and materialized; reused if there."""
    from appliance.layout import Layout

    home_dir = folder / "home"
    if Layout(home_dir).exists():
        return home_dir
    for task, model, write, source, live_days in MODELS:
        spec = write(folder / "data" / model, name=model, live_days=live_days)
        if trees:
            text = spec.read_text()
            rounds = text[text.index("num_boost_round = ") :].split("\n", 1)[0]
            spec.write_text(text.replace(rounds, f"num_boost_round = {trees}"))
        started = time.monotonic()
        _cli(home_dir, "init", "--spec", str(spec))
        _cli(home_dir, "ingest", model, str(spec.parent / source))
        _cli(home_dir, "train", model)
        _cli(home_dir, "promote", model, "1")
        _cli(home_dir, "features", "materialize", model)
        print(f"trained {task} model '{model}' in {time.monotonic() - started:.1f} s", flush=True)
    return home_dir


def live_records(home, model: str, count: int = REQUESTS) -> list[dict]:
    """Request bodies from the first ``count`` rows of the model's live file, as ``cli._example_request``
    builds one: the entity key, the event time and the request-time features, typed as the contract says."""
    from datetime import datetime

    from appliance.data.contract import cast_columns
    from appliance.data.declared import model_contract
    from appliance.data.sources import read_source
    from appliance.data.values import json_value

    spec = home.spec(model)
    keys = spec.features
    frame = cast_columns(model_contract(spec), read_source(spec.resolve(spec.data.live or spec.data.source)))
    records = []
    for row in frame.head(count).iter_rows(named=True):
        record = {keys.entity_key: row[keys.entity_key]} if keys.entity_key else {}
        if spec.data.live and isinstance(row.get(keys.event_time), datetime):
            record[keys.event_time] = row[keys.event_time]
        record |= {f.name: row[f.name] for f in keys.request}
        records.append({k: json_value(v) for k, v in record.items()})
    return records


def describe(home, task: str, model: str) -> str:
    """A version's headline metrics and its gate's ONNX parity and single-row p99 checks."""
    from appliance.task import metrics_line

    v = home.registry.version(model, 1)
    checks = {c["name"]: c for c in v.gate_report["checks"]}
    gates = []
    for name, unit in (("onnx_parity", ""), ("latency_p99", " ms")):
        c = checks.get(name)
        if c is None:
            gates.append(f"{name} absent")
            continue
        verdict = "pass" if c["passed"] else "FAIL"
        gates.append(f"{name} {c['value']:.3g}{unit} (≤ {c['threshold']:g}{unit}, {verdict})")
    return f"{task:<10} {model:<7} v1: {metrics_line(task, v.metrics)}\n{'':<22}gate {'; '.join(gates)}"


def requests_per_model(home_dir: Path) -> dict[str, list[bytes]]:
    """Each model's pre-encoded single-row predict requests, carrying a fresh unlimited predict key."""
    from appliance.gateway.keys import create_key
    from appliance.home import Home

    with Home(home_dir) as home:
        _, token = create_key(home.conn, ["predict"], name="bench-tasks", rate_per_second=1e9, actor="bench")
        headers = {"Authorization": f"Bearer {token}"}
        return {
            model: [
                encode_post(f"/v1/models/{model}/predict", msgspec.json.encode(r), headers)
                for r in live_records(home, model)
            ]
            for _, model, *_ in MODELS
        }


def measure(home_dir: Path, requests: dict[str, list[bytes]], seconds: float) -> dict[tuple[str, int], LoadResult]:
    """Best-of-rounds result per (model, concurrency), every model served by one server."""
    best: dict[tuple[str, int], LoadResult] = {}
    models = [model for _, model, *_ in MODELS]
    with Server("appliance.serving.app:create_app", home_dir) as server:
        for c in CONCURRENCIES:
            for round_ in range(ROUNDS):  # alternating order: a slow spell falls on every model alike
                for model in models if round_ % 2 == 0 else models[::-1]:
                    result, _ = run_load(server.port, requests[model], c, seconds, server_pid=server.pid)
                    if result.failures:
                        raise SystemExit(f"{model} c={c}: answers other than 200: {result.statuses}")
                    if (model, c) not in best or result.per_second > best[(model, c)].per_second:
                        best[(model, c)] = result
            for task, model, *_ in MODELS:
                print(best[(model, c)].line(f"{task} ({model}) c={c}"), flush=True)
    return best


def print_ratios(best: dict[tuple[str, int], LoadResult]) -> None:
    print(
        "\nagainst the binary model at the same concurrency (same run): throughput (higher is better), "
        "p50 and p99 latency\nand server CPU per request (lower is better)"
    )
    base_model = MODELS[0][1]
    for c in CONCURRENCIES:
        base = best[(base_model, c)]
        for task, model, *_ in MODELS:
            r = best[(model, c)]
            print(
                f"c={c:<2} {task:<10} throughput {r.per_second / base.per_second:5.2f}×   "
                f"p50 {r.p50_ms / base.p50_ms:5.2f}×   p99 {r.p99_ms / base.p99_ms:5.2f}×   "
                f"CPU {r.server_cpu_us / base.server_cpu_us:5.2f}× ({r.server_cpu_us:.0f} µs/req)"
            )


def main() -> None:
    parser = bench_arguments(__doc__, 3.0)
    parser.set_defaults(trees=None)  # the specs' own rounds unless asked
    args = parser.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    home_dir = trained_home(folder, args.trees)
    from appliance.home import Home

    with Home(home_dir) as home:
        print("\n".join(describe(home, task, model) for task, model, *_ in MODELS))
    requests = requests_per_model(home_dir)
    print(
        f"\ndata directory {home_dir}; {', '.join(f'{m}: {len(r)}' for m, r in requests.items())} distinct "
        f"requests; {args.seconds:g} s per case after 1 s warm-up, {ROUNDS} rounds in alternating order, best "
        f"round kept; load from {loader_processes(max(CONCURRENCIES))} process(es)"
    )
    print_ratios(measure(home_dir, requests, args.seconds))


if __name__ == "__main__":
    main()
