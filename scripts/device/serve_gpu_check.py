"""One device check: serving on the GPU against the CPU, for an MLP and a large LightGBM model.

    python scripts/device/serve_gpu_check.py [--per-day 20000] [--trees 1000] [--leaves 255] [--width 1024]
        [--seconds 5] [--concurrency 32,256] [--workdir DIR]

Generates the loan applications data set of the tests (``tests/own_data.py``: no entity, text times in a
CSV, integer codes as a category; ``--per-day`` rows a day, 12 days to train on and 3 live), trains on it
through the CLI an MLP of 3 hidden layers of ``--width`` (``loans_mlp``) and a LightGBM model of
``--trees`` rounds of up to ``--leaves`` leaves (``loans_trees``), and promotes both (their AUC gate
lowered to 0 and any other overridden: this measures serving, not accuracy). Then for ``[serving]
provider = "cuda"`` and ``"cpu"`` in turn, the models' specs are registered again saying so and one
appliance server (uvicorn in its own process, as ``appliance serve`` runs it) serves the data directory;
each model is driven with single-row predict requests from its live days at each concurrency by
``scripts/bench/load.py``'s load generator, best of 2 rounds. Prints, per model, provider asked and
concurrency: the provider that served (GET /v1/models), requests/s, p50 and p99, and CUDA's throughput
over the CPU's; a JSON summary goes to $OUT/serve_gpu.json when $OUT is set.

Without CUDA (this check's own smallest run: ``--per-day 300 --trees 40 --leaves 15 --width 64 --seconds 1``)
the "cuda" rows fall back to the CPU, the server logs one warning per version, and the check says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import msgspec  # noqa: E402
import onnxruntime as ort  # noqa: E402
from load import LoadResult, Server, encode_post, mlp_params, run_load  # noqa: E402
from own_data import write_loans  # noqa: E402
from tasks import _cli, live_records  # noqa: E402

from appliance.gateway.keys import create_key  # noqa: E402
from appliance.home import Home  # noqa: E402
from appliance.spec import load_spec  # noqa: E402

ROUNDS = 2
PROVIDERS = ("cuda", "cpu")


def trained_home(folder: Path, per_day: int, trees: int, leaves: int, width: int) -> Path:
    """The data directory with both models trained on the loans data set and promoted; reused if there."""
    home_dir = folder / "home"
    if home_dir.exists():
        return home_dir
    for model in ("loans_trees", "loans_mlp"):
        spec = write_loans(folder / "data" / model, name=model, per_day=per_day)
        text = spec.read_text().replace("min_auc = 0.6", "min_auc = 0.0")  # a short MLP fit may not reach it
        if model == "loans_mlp":
            params = text.index("[training.params]")
            text = text[:params] + mlp_params(width) + text[text.index("[validation]") :]
            text = text.replace("[training]\n", '[training]\ntrainer = "mlp"\n')
        else:
            text = text.replace("num_boost_round = 40", f"num_boost_round = {trees}")
            text = text.replace("num_leaves = 15", f"num_leaves = {leaves}")
        spec.write_text(text)
        _cli(home_dir, "init", "--spec", str(spec))
        _cli(home_dir, "ingest", model, str(spec.parent / "applications.csv"))
        _cli(home_dir, "train", model)
        _cli(home_dir, "promote", model, "1", "--override", "--reason", "serve_gpu_check measures serving")
        print(f"trained {model}", flush=True)
    return home_dir


def set_provider(home_dir: Path, provider: str) -> None:
    """Register each model's spec again with ``[serving] provider`` set (a server started after loads on it)."""
    with Home(home_dir) as home:
        for m in home.registry.models():
            base = Path(m.spec_path).with_name(f"{m.name}.toml")
            variant = base.with_name(f"{m.name}-{provider}.toml")
            variant.write_text(f'{base.read_text()}\n[serving]\nprovider = "{provider}"\n')
            home.add_model(load_spec(variant), actor="serve_gpu_check")


def served_providers(port: int, token: str) -> dict[str, str | None]:
    """What the running server says serves each model (GET /v1/models)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return {m["name"]: m.get("provider") for m in json.loads(answer.read())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=20000, help="rows a day of the generated data set")
    parser.add_argument("--trees", type=int, default=1000, help="LightGBM boosting rounds")
    parser.add_argument("--leaves", type=int, default=255, help="LightGBM leaves per tree, at most")
    parser.add_argument("--width", type=int, default=1024, help="the MLP's hidden layers' width")
    parser.add_argument("--seconds", type=float, default=5.0, help="each case, after 1 s of warm-up")
    parser.add_argument("--concurrency", default="32,256")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse (or create) the trained data here")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    print(
        f"ONNX Runtime {ort.__version__}, providers {', '.join(ort.get_available_providers())}"
        + ("" if cuda else "\nCUDA is unavailable here: the cuda rows fall back to the CPU (one warning per version)"),
        flush=True,
    )
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="serve-gpu-"))
    home_dir = trained_home(folder, args.per_day, args.trees, args.leaves, args.width)
    with Home(home_dir) as home:
        _, token = create_key(home.conn, ["predict"], name="serve_gpu_check", rate_per_second=1e9, actor="bench")
        headers = {"Authorization": f"Bearer {token}"}
        requests = {
            m.name: [
                encode_post(f"/v1/models/{m.name}/predict", msgspec.json.encode(r), headers)
                for r in live_records(home, m.name)
            ]
            for m in home.registry.models()
        }
    results: dict[tuple[str, str, int], tuple[str | None, LoadResult]] = {}
    for provider in PROVIDERS:
        set_provider(home_dir, provider)
        with Server("appliance.serving.app:create_app", home_dir) as server:
            served = served_providers(server.port, token)
            for model, model_requests in sorted(requests.items()):
                for c in concurrencies:
                    best = None
                    for _ in range(ROUNDS):
                        result, _ = run_load(server.port, model_requests, c, args.seconds, server_pid=server.pid)
                        best = result if best is None or result.per_second > best.per_second else best
                    assert best is not None
                    results[(model, provider, c)] = (served[model], best)
                    print(best.line(f"{model} {provider} c={c}") + f"   served by {served[model]}", flush=True)
    print("\nCUDA's throughput over the CPU's, and its p99 over the CPU's, at the same concurrency")
    summary = []
    for (model, provider, c), (served, r) in sorted(results.items()):
        summary.append(
            {"model": model, "provider_asked": provider, "provider_served": served, "concurrency": c}
            | {"per_second": r.per_second, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "failures": r.failures}
        )
        if provider == "cuda":
            cpu = results[(model, "cpu", c)][1]
            print(
                f"{model:<12} c={c:<4} throughput {r.per_second / cpu.per_second:5.2f}×   "
                f"p99 {r.p99_ms / cpu.p99_ms:5.2f}×   (cuda served by {served})"
            )
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "serve_gpu.json").write_text(json.dumps({"cuda": cuda, "rows": summary}, indent=1))


if __name__ == "__main__":
    main()
