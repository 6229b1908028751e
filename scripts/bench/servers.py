"""Benchmark: the same appliance app under three HTTP servers, same run, ratios against today's.

  today           uvicorn with the appliance's own protocol (``appliance.serving.http_protocol``: bounded
                  heads, one write per answer, plain predict requests answered below ASGI), served
                  exactly as ``appliance serve`` serves it, on the event loop the locked environment
                  has (asyncio: uvloop is not in the lock)
  today + uvloop  the same on uvloop: what the loop alone is worth
  uvicorn+uvloop  stock uvicorn (httptools, uvloop), no private subclass: the app's normal ASGI route
  granian         granian (Rust HTTP/1.1, one worker, uvloop) serving the same app through ASGI

Single-row predict requests (the full path: key, rate limit, online lookup, ONNX Runtime, prediction
log; the spec's micro-batching) at concurrency 1 and 32, 2 rounds in alternating order, best round
kept. By default each server runs pinned to CPU 0 and the load to the other CPUs, so every server
gets the same single core whatever threads it starts. CPU µs per request counts the server process
and all its children (granian's worker, the prediction log's writer). Needs uvloop and granian
importable (a scratch environment; neither is in the lock); a missing one's cases are skipped.

    python scripts/bench/servers.py [--seconds 3] [--trees 300] [--workdir /tmp/bench-serve] [--no-pin]
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import LoadResult, ServerProcess, bench_arguments, bench_home, predict_requests, run_load, sample_records

ROUNDS = 2
CONCURRENCIES = (1, 32)
SERVER_CPU = 0
HOME_ENV = "BENCH_SERVERS_HOME"


def _pin(pin: bool) -> None:
    if pin:  # before any thread or child process starts: they inherit it
        os.sched_setaffinity(0, {SERVER_CPU})


def _today(home: str, pin: bool, loop: str, port: int) -> None:
    _pin(pin)
    import uvicorn

    from appliance.serving.server import server_config

    config = server_config(Path(home), "127.0.0.1", port)
    config.loop = loop
    uvicorn.Server(config).run()


def _stock_uvicorn(home: str, pin: bool, port: int) -> None:
    _pin(pin)
    import uvicorn

    from appliance.serving.app import create_app

    config = uvicorn.Config(
        create_app(Path(home)),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        log_config=None,
    )
    uvicorn.Server(config).run()


def granian_app():
    """The app, built in granian's worker (granian imports its target by name)."""
    from appliance.serving.app import create_app

    return create_app(Path(os.environ[HOME_ENV]))


def _granian(home: str, pin: bool, port: int) -> None:
    _pin(pin)
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.server import Server

    os.environ[HOME_ENV] = home
    Server(
        "servers:granian_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        factory=True,
        log_enabled=False,
    ).serve()


def main() -> None:
    args_parser = bench_arguments(__doc__, 3.0)
    args_parser.add_argument("--no-pin", dest="pin", action="store_false", help="leave the server unpinned")
    args = args_parser.parse_args()
    home_dir = bench_home(args)
    home = str(home_dir)
    requests = predict_requests(home_dir, sample_records())
    have = {m: importlib.util.find_spec(m) is not None for m in ("uvloop", "granian")}
    cases = [("today (own protocol, asyncio)", _today, (home, args.pin, "asyncio"))]
    if have["uvloop"]:
        cases += [
            ("today + uvloop", _today, (home, args.pin, "uvloop")),
            ("stock uvicorn httptools + uvloop", _stock_uvicorn, (home, args.pin)),
        ]
    if have["granian"] and have["uvloop"]:
        cases.append(("granian ASGI (uvloop)", _granian, (home, args.pin)))
    import uvicorn

    versions = f"uvicorn {uvicorn.__version__}"
    for m in ("uvloop", "granian"):
        if have[m]:
            versions += f", {m} {importlib.import_module(m).__version__}"
    pinning = f"pinned to CPU {SERVER_CPU}, load on the others" if args.pin else "unpinned"
    print(
        f"data directory {home_dir}; {versions}; {args.seconds:g} s per case after 1 s warm-up, {ROUNDS} rounds "
        f"in alternating order, best round kept; server {pinning}; "
        f"{os.cpu_count()} CPUs; skipped: {', '.join(m for m, ok in have.items() if not ok) or 'nothing'}\n"
    )
    servers = []
    try:
        for label, target, targs in cases:
            servers.append((label, ServerProcess(target, *targs).__enter__()))
        if args.pin and (os.cpu_count() or 1) > 1:  # the load generators (spawned from here) keep off the server's CPU
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {SERVER_CPU})
        best: dict[tuple[str, int], LoadResult] = {}
        for c in CONCURRENCIES:
            for round_ in range(ROUNDS):
                for label, server in servers if round_ % 2 == 0 else servers[::-1]:
                    result, _ = run_load(server.port, requests, c, args.seconds, server_pid=server.pid)
                    if (label, c) not in best or result.per_second > best[(label, c)].per_second:
                        best[(label, c)] = result
            for label, _ in servers:
                print(best[(label, c)].line(f"{label} c={c}"), flush=True)
    finally:
        for _, server in servers:
            server.__exit__()
    print(
        "\nagainst today (own protocol, asyncio) at the same concurrency: throughput, p50, p99 and server CPU "
        "per request (above 1× is more)"
    )
    print(
        f"{'case':<34} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>7} "
        f"{'thru':>6} {'p50':>6} {'p99':>6} {'CPU':>6}"
    )
    for c in CONCURRENCIES:
        base = best[(cases[0][0], c)]
        for label, _ in servers:
            r = best[(label, c)]
            print(
                f"{label:<34} {c:>3} {r.per_second:8.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} {r.server_cpu_us:7.0f} "
                f"{r.per_second / base.per_second:5.2f}× {r.p50_ms / base.p50_ms:5.2f}× "
                f"{r.p99_ms / base.p99_ms:5.2f}× {r.server_cpu_us / base.server_cpu_us:5.2f}×"
                + (f"  non-200: {r.failures}" if r.failures else "")
            )


if __name__ == "__main__":
    main()
