"""Benchmark: the full serving path against a bare Litestar + ONNX Runtime endpoint, same run.

Through real uvicorn servers (each in its own process) at concurrency 1, 8 and 32:
  bare          one route: decode JSON, encode the record, one ONNX Runtime call, answer
  full          gateway (API key + rate limit), routing, per-request encode, micro-batched
                ONNX Runtime call, request id, asynchronous prediction log — micro-batching off
                (serving.max_batch = 1) and on (the spec's max_wait_ms / max_batch)
  full + A/B    the same with an A/B deployment splitting traffic by user_id (concurrency 32)
Targets: full ≥ 0.7× bare; full with micro-batching ≥ 1.5× bare at concurrency 32.
The online feature lookup is not in the path yet (the feature store is another branch): records
carry all six features plus the entity key.

    python scripts/bench/serve.py [--seconds 3] [--trees 300] [--workdir /tmp/bench-serve]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import Server, encode_post, predict_requests, run_load, sample_records, trained_home  # noqa: E402

import msgspec  # noqa: E402
from litestar import Litestar, Request, Response, get, post  # noqa: E402


def bare_app(home_dir: str):
    """The baseline: Litestar and ONNX Runtime with nothing in between."""
    from appliance.home import Home
    from appliance.serving.models import load_production

    with Home(Path(home_dir)) as home:
        model = load_production(home, "fraud")
    decode, encode = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode

    @post("/v1/models/fraud/predict", status_code=200)
    async def predict(request: Request) -> Response:
        p = float(model.run(model.encode([decode(await request.body())]))[0])
        return Response(encode({"probability": p, "label": int(p >= model.threshold)}), media_type="application/json")

    @get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Litestar([predict, healthz], openapi_config=None, logging_config=None, debug=False)


def use_serving(home_dir: Path, max_batch: int) -> None:
    """Re-register the model's spec with another micro-batch size (the server reads it at start)."""
    from appliance.home import Home
    from appliance.spec import load_spec

    with Home(home_dir) as home:
        path = Path(home.registry.model("fraud").spec_path)
        text = path.read_text()
        variant = path.with_name(f"fraud-batch{max_batch}.toml")
        variant.write_text(text.replace("max_batch = 64", f"max_batch = {max_batch}"))
        home.add_model(load_spec(variant), actor="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    home_dir = trained_home(work, args.trees)

    from appliance.deployment import deployments
    from appliance.home import Home

    records = sample_records()
    bare_requests = [encode_post("/v1/models/fraud/predict", msgspec.json.encode(r)) for r in records]
    full_requests = predict_requests(home_dir, records)
    print(f"data directory {home_dir}; {args.seconds:g} s per case after 1 s warm-up; ONNX model of "
          f"{args.trees} trees")
    results: dict[tuple[str, int], float] = {}

    def case(label: str, server: Server, requests: list[bytes], concurrency: int) -> None:
        result, _ = run_load(server.port, requests, concurrency, args.seconds)
        results[(label, concurrency)] = result.per_second
        print(result.line(f"{label} c={concurrency}"), flush=True)

    with Server("serve:bare_app", str(home_dir)) as bare:
        for c in (1, 8, 32):
            case("bare", bare, bare_requests, c)
    for max_batch, label in ((1, "full, no micro-batching"), (64, "full, micro-batching")):
        use_serving(home_dir, max_batch)
        with Server("appliance.serving.app:create_app", home_dir) as full:
            for c in (1, 8, 32):
                case(label, full, full_requests, c)
    with Home(home_dir) as home:
        deployments.start(home, "fraud", "ab", 2, actor="bench")
    try:
        with Server("appliance.serving.app:create_app", home_dir) as full:
            case("full, micro-batching, A/B split", full, full_requests, 32)
    finally:
        with Home(home_dir) as home:
            deployments.abort(home, "fraud", actor="bench", reason="benchmark done")

    print("\nratios to bare at the same concurrency (targets: full ≥ 0.7×; micro-batching ≥ 1.5× at c=32)")
    for c in (1, 8, 32):
        base = results[("bare", c)]
        row = [f"c={c:<3}"]
        for label in ("full, no micro-batching", "full, micro-batching"):
            row.append(f"{label}: {results[(label, c)] / base:.2f}×")
        if c == 32:
            row.append(f"with A/B split: {results[('full, micro-batching, A/B split', 32)] / base:.2f}×")
        print("   ".join(row))


if __name__ == "__main__":
    main()
