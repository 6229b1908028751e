"""Soak: mixed traffic through `appliance up --headless` for a bounded time, everything an operator does meanwhile.

Over a fresh copy of a trained data directory (the sample model, v1 in production, v2 a candidate), the
service runs as systemd runs it, on a loopback port, with an admin key and a predict + feedback key made
by `appliance keys create`. For ``--seconds``:

  predicts      ``--clients`` threads, keep-alive, each sending single records and (one request in ten)
                lists of 2–50 of the sample's live records, as fast as they are answered
  feedback      the true outcome of a share of the answered records (``--feedback-share``), 2 s later
  promotion     v2 promoted, then rolled back, through the admin API
  canary        v2 started as a canary and left alone: the server's canary analysis advances or rolls it back
  retrain       one through the admin API (it learns from the feedback), watched to its end
  monitor       `appliance jobs run monitor fraud` every ``--monitor-every`` seconds
  backup        one `appliance backup` while all of the above runs

Then the service is stopped with SIGTERM (which writes what the prediction log has queued) and the log is
read. Printed: answers by route and HTTP status; the records of the 200 answers against the prediction
log's rows; the RSS of every process of the service (the server and its children: the log's writer, the
retrain's worker) when traffic started, when it ended and at its peak; each monitor run's and the
backup's duration and peak RSS; the promotion's, canary's and retrain's outcomes.

Fails (exit 1) on any 5xx, any request left without an answer, a 200 answer without its log row (or a
200 row without an answer), a monitor run or the backup failing, a retrain that fails, or a service that
does not stop cleanly. The canary's verdict and the retrain's gates are the service's judgments, reported
as they fall. The run's data directory is deleted when it passes, kept (and named) when it fails or with ``--keep``.

    .venv/bin/python scripts/bench/soak.py [--seconds 120] [--clients 4] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import http.client
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
import psutil
from load import free_port, sample_records, trained_home

from appliance.layout import Layout

MODEL = "fraud"
RECORDS = 2000
BATCH_SHARE = 0.1  # of predict requests, the share that send a list of records
FEEDBACK_DELAY_S = 2.0  # an answer's row is in the log well before its outcome is sent
WARMUP_REQUESTS = 50  # answered before the start RSS is taken: the service is serving, not starting
RETRAIN_GRACE_S = 60.0  # how long after traffic a retrain still under way is waited for
# When each operator action happens, as a share of the run.
PROMOTE_AT, ROLLBACK_AT, CANARY_AT, RETRAIN_AT, BACKUP_AT = 0.08, 0.16, 0.25, 0.35, 0.5
FINAL = {"succeeded", "failed", "skipped"}


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long traffic runs")
    parser.add_argument("--clients", type=int, default=4, help="predict threads, each on its own connection")
    parser.add_argument(
        "--feedback-share",
        type=float,
        default=0.3,
        help="share of answered predict requests whose outcomes are sent back",
    )
    parser.add_argument("--monitor-every", type=float, default=20.0, help="seconds between monitor runs")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="reuse (or create) the trained data directory here; each run works on a copy",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's data directory even when it passes")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    trained = trained_home(workdir)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    home = run_dir / "home"
    shutil.copytree(trained, home)
    soak = Soak(home, run_dir, args)
    try:
        passed = soak.run()
    finally:
        soak.stop_service()
    if passed and not args.keep:
        shutil.rmtree(run_dir)
    else:
        print(f"the run's data directory and the service's output are kept in {run_dir}")
    return 0 if passed else 1


def cli(home: Path, *arguments: str) -> Command:
    """Run the appliance's command line as a user would, in its own process: its exit code, output, wall
    time and peak RSS (read while it runs: the kernel's ru_maxrss of a child counts the memory of the parent
    it was forked from, this bench's)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--home", str(home), *arguments],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, high_water_mib(proc.pid))
            time.sleep(0.1)
        out.seek(0)
        output = out.read()
    return Command(proc.returncode, output.strip(), time.monotonic() - started, peak)


def high_water_mib(pid: int) -> float:
    """A process's peak RSS so far (VmHWM: since its exec, so a peak between two samples is not missed);
    0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Command:
    code: int
    output: str
    seconds: float
    peak_mib: float


@dataclass
class Tracked:
    """One process of the service, as the sampler saw it."""

    role: str
    first_s: float
    start_mib: float
    last_mib: float
    peak_mib: float
    last_s: float
    end_mib: float | None = None  # when traffic ended, if it was running then
    gone: bool = False


@dataclass
class Outcomes:
    """What the operator's actions came to, for the report."""

    promotion: list[str] = field(default_factory=list)
    canary: str = "not started"
    retrain: str = "not started"
    retrain_failed: bool = False
    retrain_pid: int | None = None
    monitors: list[tuple[float, Command]] = field(default_factory=list)
    backup: tuple[float, Command] | None = None
    backup_rows: int | None = None
    alerts: list[str] = field(default_factory=list)


class Client:
    """One keep-alive HTTP/1.1 connection to the service (reopened after a failure)."""

    def __init__(self, port: int, token: str):
        self.port, self.headers = port, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """The answer's status and body; raises OSError or HTTPException when none came."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            answer = self.conn.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


class Soak:
    """One run: the service, its traffic, the operator's actions on their schedule, and what they came to."""

    def __init__(self, home: Path, run_dir: Path, args) -> None:
        self.home, self.run_dir, self.args = home, run_dir, args
        self.port = free_port()
        self.records, self.labels = labelled_records()
        self.singles = [msgspec.json.encode(r) for r in self.records]
        rng = random.Random(7)
        # (first record, count, body), encoded before the clock starts: one list from each record on, so the
        # canary's split (by the first record's user) gives each arm lists of every size
        self.batches = []
        for first in range(RECORDS - 50):
            n = rng.randint(2, 50)
            self.batches.append((first, n, msgspec.json.encode(self.records[first : first + n])))
        self.lock = threading.Lock()
        self.statuses: Counter[tuple[str, int | str]] = Counter()
        self.answered: dict[str, int] = {}  # request id of each 200 predict answer → its records
        self.pending: list[tuple[float, str, int, int]] = []  # (answered at, request id, first record, count)
        self.feedback_sent = self.feedback_unknown = self.feedback_requests = 0
        self.outcomes = Outcomes()
        self.processes: dict[int, Tracked] = {}
        self.stop = threading.Event()
        self.finishing = threading.Event()  # traffic has ended; the operator's actions under way have not
        self.service: subprocess.Popen | None = None
        self.service_exit: int | None = None
        self.began = 0.0

    # -- the run --------------------------------------------------------------------------------------

    def run(self) -> bool:
        admin = self.key("admin")
        client = self.key("predict", "feedback")
        with (self.run_dir / "service.log").open("w") as service_log:  # the child keeps its own descriptor
            self.service = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "appliance",
                    "--home",
                    str(self.home),
                    "up",
                    "--headless",
                    "--port",
                    str(self.port),
                ],
                stdout=service_log,
                stderr=subprocess.STDOUT,
            )
        ready_s = self.wait_ready()
        warm = Client(self.port, client)
        for i in range(WARMUP_REQUESTS):
            self.predict(warm, i % 10 == 0, i)
        self.began = time.monotonic()
        self.sample(0.0)
        print(
            f"soak: {self.args.seconds:g} s of mixed traffic through `appliance up --headless` on "
            f"127.0.0.1:{self.port} ({self.args.clients} predict threads), ready {ready_s:.1f} s after start; "
            f"data directory {self.home}",
            flush=True,
        )
        threads = [
            threading.Thread(target=self.send_predicts, args=(Client(self.port, client), n), daemon=True)
            for n in range(self.args.clients)
        ]
        threads += [
            threading.Thread(target=self.send_feedback, args=(Client(self.port, client),), daemon=True),
            threading.Thread(target=self.operate_deployments, args=(admin,), daemon=True),
            threading.Thread(target=self.retrain, args=(admin,), daemon=True),
            threading.Thread(target=self.run_monitors, daemon=True),
            threading.Thread(target=self.take_backup, daemon=True),
        ]
        sampler = threading.Thread(target=self.sample_every_second, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        self.stop.wait(self.args.seconds)
        self.finishing.set()
        self.stop.set()
        traffic_s = self.now()
        self.sample(traffic_s, traffic_ended=True)
        for t in threads:  # a monitor run, the backup or the retrain under way is let finish
            t.join()
        self.finishing.clear()
        sampler.join()
        self.sample(self.now())
        self.read_alerts(admin)
        self.stop_service()
        return self.report(traffic_s)

    def key(self, *scopes: str) -> str:
        """A key made the way an operator makes one; its token is the command's last line."""
        flags = [a for s in scopes for a in ("--scope", s)]
        made = cli(self.home, "keys", "create", *flags, "--name", f"soak {'+'.join(scopes)}", "--rate", "1e9")
        if made.code:
            raise SystemExit(f"`appliance keys create` failed: {made.output}")
        return made.output.splitlines()[-1].strip()

    def wait_ready(self) -> float:
        assert self.service is not None
        started = time.monotonic()
        while time.monotonic() - started < 300:
            if self.service.poll() is not None:
                raise SystemExit(
                    f"`appliance up` exited with {self.service.returncode} before serving; see "
                    f"{self.run_dir / 'service.log'}"
                )
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise SystemExit("`appliance up` was not ready within 300 s")

    def stop_service(self) -> None:
        """SIGTERM, as systemd stops it: requests in flight finish and the prediction log writes its queue."""
        if self.service is None or self.service_exit is not None:
            return
        self.service.send_signal(signal.SIGTERM)
        try:
            self.service_exit = self.service.wait(90)
        except subprocess.TimeoutExpired:
            self.service.kill()
            self.service.wait()
            print("the service did not stop within 90 s of SIGTERM; killed")
            self.service_exit = -signal.SIGKILL

    # -- traffic --------------------------------------------------------------------------------------

    def predict(self, client: Client, batch: bool, n: int) -> None:
        if batch:
            first, count, body = self.batches[n % len(self.batches)]
        else:
            first, count, body = n % RECORDS, 1, self.singles[n % RECORDS]
        route = "predict, list" if batch else "predict, 1 record"
        try:
            status, answer = client.call("POST", f"/v1/models/{MODEL}/predict", body)
        except (OSError, http.client.HTTPException):
            self.count(route, "no answer")
            return
        self.count(route, status)
        if status == 200:
            request_id = msgspec.json.decode(answer)["request_id"]
            with self.lock:
                self.answered[request_id] = count
                if random.random() < self.args.feedback_share:
                    self.pending.append((time.monotonic(), request_id, first, count))

    def send_predicts(self, client: Client, thread: int) -> None:
        rng = random.Random(thread)
        n = thread * 7919
        while not self.stop.is_set():
            self.predict(client, rng.random() < BATCH_SHARE, n)
            n += 1

    def send_feedback(self, client: Client) -> None:
        """Every half second, the outcomes of the answers at least FEEDBACK_DELAY_S old."""
        while not self.stop.wait(0.5):
            with self.lock:
                cut = time.monotonic() - FEEDBACK_DELAY_S
                due = [p for p in self.pending if p[0] <= cut]
                self.pending = [p for p in self.pending if p[0] > cut]
            outcomes = [
                {"request_id": rid, "outcome": self.labels[first + i], "position": i}
                for _, rid, first, count in due
                for i in range(count)
            ]
            if not outcomes:
                continue
            try:
                status, answer = client.call(
                    "POST", f"/v1/models/{MODEL}/feedback", msgspec.json.encode({"outcomes": outcomes})
                )
            except (OSError, http.client.HTTPException):
                self.count("feedback", "no answer")
                continue
            self.count("feedback", status)
            if status == 200:
                with self.lock:
                    self.feedback_requests += 1
                    self.feedback_sent += len(outcomes)
                    self.feedback_unknown += len(msgspec.json.decode(answer)["unknown"])

    def count(self, route: str, status: int | str) -> None:
        with self.lock:
            self.statuses[(route, status)] += 1

    def admin(self, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """One admin call on a connection of its own (the next may come after the keep-alive timeout)."""
        client = Client(self.port, token)
        try:
            status, answer = client.call(method, path, None if body is None else msgspec.json.encode(body))
        except (OSError, http.client.HTTPException) as e:
            self.count("admin", "no answer")
            return 0, {"error": str(e)}
        finally:
            client.close()
        self.count("admin", status)
        return status, msgspec.json.decode(answer) if answer else {}

    # -- the operator ---------------------------------------------------------------------------------

    def at(self, share: float) -> bool:
        """Wait until that share of the run; False if the run ended first."""
        return not self.stop.wait(max(0.0, self.began + share * self.args.seconds - time.monotonic()))

    def now(self) -> float:
        return time.monotonic() - self.began

    def operate_deployments(self, token: str) -> None:
        """Promote v2 and roll it back, then start it as a canary and leave it to the server's analysis."""
        for share, path, body in (
            (PROMOTE_AT, "promote", {"version": 2, "reason": "soak"}),
            (ROLLBACK_AT, "rollback", {"reason": "soak"}),
        ):
            if not self.at(share):
                return
            status, answer = self.admin(token, "POST", f"/v1/models/{MODEL}/{path}", body)
            served = f"v{answer['version']} in production" if status == 200 else answer.get("detail", answer)
            self.outcomes.promotion.append(f"{path} at {self.now():.0f} s: {status}, {served}")
        if not self.at(CANARY_AT):
            return
        started = self.now()
        status, answer = self.admin(
            token, "POST", f"/v1/models/{MODEL}/deployments", {"strategy": "canary", "version": 2}
        )
        if status != 201:
            self.outcomes.canary = f"start refused: {status} {answer.get('detail', answer)}"
            return
        self.outcomes.canary = "started, still running when traffic ended"
        steps = self.canary_steps()
        while not self.stop.wait(1.0):
            status, answer = self.admin(token, "GET", f"/v1/models/{MODEL}/deployments")
            if status != 200:
                continue
            d = answer["deployment"]
            if d["status"] == "running":
                self.outcomes.canary = f"still running when traffic ended, at {d['traffic_percent']:g} % of traffic"
                continue
            # Passing the last step before 100 % promotes it; its step stays that one.
            where = (
                f"passed at {', '.join(f'{p:g}' for p in steps[: d['step'] + 1])} % and was promoted"
                if d["status"] == "completed"
                else f"at {steps[d['step']]:g} % of traffic"
            )
            self.outcomes.canary = (
                f"{d['status']} {d['ended_at'] - d['started_at']:.0f} s after it started "
                f"(at {started:.0f} s): {where}; {d['reason']}"
            )
            return

    def canary_steps(self) -> list[float]:
        from appliance.home import Home

        with Home(self.home) as home:
            return list(home.spec(MODEL).deployment.canary_steps)

    def read_alerts(self, token: str) -> None:
        """The alerts the monitor runs raised, and what their actions did."""
        status, answer = self.admin(token, "GET", f"/v1/alerts?model={MODEL}&all=true")
        if status != 200:
            self.outcomes.alerts.append(f"could not be read: {status} {answer}")
            return
        for a in answer:
            actions = ", ".join(f"{x['action']} {x['status']}" for x in a["actions"])
            self.outcomes.alerts.append(
                f"{a['severity']} {a['rule']} ({a['target']}, {a['status']}, seen "
                f"{a['count']}×){': ' + actions if actions else ''}"
            )

    def retrain(self, token: str) -> None:
        """One retrain through the admin API, watched until it ends (a little past the traffic if need be)."""
        if not self.at(RETRAIN_AT):
            return
        started = self.now()
        status, answer = self.admin(token, "POST", f"/v1/models/{MODEL}/retrain", {"reason": "soak"})
        if status != 202:
            self.outcomes.retrain = f"refused: {status} {answer.get('detail', answer)}"
            return
        watch, run = answer["watch"], {"status": "starting"}  # the run as the API last described it
        give_up = self.began + self.args.seconds + RETRAIN_GRACE_S
        while time.monotonic() < give_up:
            time.sleep(1.0)
            status, answer = self.admin(token, "GET", watch)
            if status == 200:
                run = answer
                if run.get("worker_pid"):  # names its process in the memory table
                    self.outcomes.retrain_pid = int(run["worker_pid"])
                if run["status"] in FINAL:
                    break
        self.outcomes.retrain = f"started at {started:.0f} s: " + retrain_outcome(run)
        self.outcomes.retrain_failed = run["status"] == "failed"

    def run_monitors(self) -> None:
        first = min(10.0, self.args.monitor_every / 2)
        k = 0
        while self.at((first + k * self.args.monitor_every) / self.args.seconds):
            at = self.now()
            self.outcomes.monitors.append((at, cli(self.home, "jobs", "run", "monitor", MODEL)))
            k = max(k + 1, int((self.now() - first) / self.args.monitor_every) + 1)  # a long run skips its turns

    def take_backup(self) -> None:
        if not self.at(BACKUP_AT):
            return
        at, dest = self.now(), self.run_dir / "backup"
        done = cli(self.home, "backup", str(dest))
        self.outcomes.backup = (at, done)
        if done.code == 0:
            with sqlite3.connect(f"file:{dest / Layout(self.home).predictions_db.name}?mode=ro", uri=True) as db:
                self.outcomes.backup_rows = db.execute("SELECT count(*) FROM predictions").fetchone()[0]

    # -- memory ---------------------------------------------------------------------------------------

    def sample_every_second(self) -> None:
        """Once a second until traffic and whatever the operator started have ended (for the peaks)."""
        while not self.stop.wait(1.0):
            self.sample(self.now())
        while self.finishing.is_set():
            time.sleep(1.0)
            self.sample(self.now())

    def sample(self, at: float, traffic_ended: bool = False) -> None:
        """RSS of the service's process and each of its children now; new ones are named by what they are."""
        assert self.service is not None
        try:
            root = psutil.Process(self.service.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        seen = set()
        for p in family:
            try:
                mib = p.memory_info().rss / 2**20
                role = self.processes[p.pid].role if p.pid in self.processes else self.role(p, at)
            except psutil.NoSuchProcess:
                continue
            seen.add(p.pid)
            with self.lock:
                t = self.processes.setdefault(p.pid, Tracked(role, at, mib, mib, mib, at))
                t.last_mib, t.peak_mib, t.last_s = mib, max(t.peak_mib, mib, high_water_mib(p.pid)), at
                if traffic_ended:
                    t.end_mib = mib
        with self.lock:
            for pid, t in self.processes.items():
                if pid not in seen:
                    t.gone = True

    def role(self, p: psutil.Process, at: float) -> str:
        """What a process of the service is: the server, the log's writer (the child it starts with), a
        resource tracker; a child started later is named at the report (the retrain's worker, by its pid)."""
        assert self.service is not None
        if p.pid == self.service.pid:
            return "appliance up (API, scheduler)"
        command = " ".join(p.cmdline())
        if "resource_tracker" in command:
            return "multiprocessing resource tracker"
        if at == 0.0 and "spawn_main" in command:
            return "prediction-log writer"
        return "started during the run"

    # -- the report -----------------------------------------------------------------------------------

    def report(self, traffic_s: float) -> bool:
        failures = []
        routes = sorted({r for r, _ in self.statuses})
        columns = sorted({s for _, s in self.statuses}, key=lambda s: (isinstance(s, str), s))
        print(f"\nanswers by status over {traffic_s:.0f} s (warm-up's {WARMUP_REQUESTS} predicts included)")
        print(f"  {'route':<20}" + "".join(f"{c!s:>11}" for c in columns) + f"{'total':>11}")
        for r in routes:
            row = [self.statuses.get((r, c), 0) for c in columns]
            print(f"  {r:<20}" + "".join(f"{n:>11,}" for n in row) + f"{sum(row):>11,}")
        server_errors = sum(n for (_, s), n in self.statuses.items() if isinstance(s, int) and s >= 500)
        unanswered = sum(n for (_, s), n in self.statuses.items() if s == "no answer")
        if server_errors:
            failures.append(f"{server_errors} answers were 5xx")
        if unanswered:
            failures.append(f"{unanswered} requests got no answer")
        predicts = sum(n for (r, s), n in self.statuses.items() if r.startswith("predict") and s == 200)
        print(f"  predicts answered 200: {predicts / traffic_s:,.0f} a second")

        logged = self.logged_rows()
        expected = {(rid, i) for rid, n in self.answered.items() for i in range(n)}
        ok_rows = {k for k, status in logged.items() if status == 200}
        missing, extra = expected - ok_rows, ok_rows - expected
        other = Counter(status for status in logged.values() if status != 200)
        print(
            f"\nprediction log (read after SIGTERM): {len(self.answered):,} answers 200 carried {len(expected):,} "
            f"records; {len(logged):,} rows, {len(ok_rows):,} of them status 200"
            + (f", others {dict(other)}" if other else "")
        )
        print(f"  200 records without a row: {len(missing):,}; 200 rows without an answer: {len(extra):,}")
        if missing or extra:
            failures.append(f"log rows differ from 200 answers ({len(missing)} missing, {len(extra)} extra)")
        print(
            f"  feedback: {self.feedback_sent:,} outcomes in {self.feedback_requests:,} requests, "
            f"{self.feedback_unknown:,} of them unknown to the log"
        )

        print(
            "\nRSS of the service's processes, MiB (start: when traffic began, or when the process appeared; "
            "end: when traffic ended; peak: its high-water mark since it started)"
        )
        print(f"  {'process':<34}{'pid':>8}{'start':>9}{'end':>9}{'peak':>9}  seen")
        for pid, t in sorted(self.processes.items(), key=lambda kv: kv[1].first_s):
            if pid == self.outcomes.retrain_pid:
                t.role = "retrain worker"
            end = f"{t.end_mib:9.0f}" if t.end_mib is not None else f"{'-':>9}"
            span = f"{t.first_s:.0f}–{t.last_s:.0f} s" + (", exited" if t.gone else "")
            print(f"  {t.role:<34}{pid:>8}{t.start_mib:9.0f}{end}{t.peak_mib:9.0f}  {span}")
        total = [
            sum(t.start_mib for t in self.processes.values() if t.first_s == 0.0),
            sum(t.end_mib or 0.0 for t in self.processes.values()),
        ]
        print(f"  {'all':<34}{'':>8}{total[0]:9.0f}{total[1]:9.0f}")

        print("\nmonitor runs (`appliance jobs run monitor fraud`; job: the run's own time; command: with start-up)")
        print(f"  {'at':>6}{'job s':>8}{'command s':>11}{'peak MiB':>10}  result")
        for at, run in self.outcomes.monitors:
            job = re.search(r" in ([0-9.]+)s", run.output)
            print(
                f"  {at:5.0f}s{job.group(1) if job else '-':>8}{run.seconds:11.1f}{run.peak_mib:10.0f}  "
                f"{run.output.splitlines()[-1] if run.output else ''}"
            )
            if run.code:
                failures.append(f"the monitor run at {at:.0f} s exited {run.code}")
        if not self.outcomes.monitors:
            print("  none ran")

        if self.outcomes.backup is None:
            print("\nbackup: not taken (the run ended first)")
        else:
            at, run = self.outcomes.backup
            print(
                f"\nbackup (`appliance backup`, at {at:.0f} s): {run.seconds:.1f} s, peak {run.peak_mib:.0f} MiB, "
                f"exit {run.code}; its prediction log holds {self.outcomes.backup_rows or 0:,} rows"
            )
            print("  " + "\n  ".join(run.output.splitlines()))
            if run.code:
                failures.append(f"the backup exited {run.code}")

        print("\npromotion and rollback (admin API): " + ("; ".join(self.outcomes.promotion) or "not reached"))
        print(f"canary of v2 (judged by the server): {self.outcomes.canary}")
        print(f"retrain (admin API): {self.outcomes.retrain}")
        print("alerts the monitor runs raised: " + ("; ".join(self.outcomes.alerts) or "none"))
        if self.outcomes.retrain_failed:
            failures.append("the retrain failed")
        print(f"service stopped by SIGTERM: exit {self.service_exit}")
        if self.service_exit != 0:
            failures.append(f"the service exited {self.service_exit} on SIGTERM")
        print("\n" + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
        return not failures

    def logged_rows(self) -> dict[tuple[str, int], int]:
        path = Layout(self.home).predictions_db
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return {
                (rid, pos): status
                for rid, pos, status in db.execute("SELECT request_id, position, status FROM predictions")
            }


def retrain_outcome(run: dict) -> str:
    """A retrain run in a line: its status, what it learnt from, and what it registered."""
    took = f" in {run['ended_at'] - run['started_at']:.0f} s" if run.get("ended_at") else ""
    line = f"{run['status']}{took}"
    stages = {s["stage"]: s["outputs"] for s in run.get("stages", [])}
    feedback = (stages.get("ingest") or {}).get("feedback")
    if feedback:
        line += f", learnt from {feedback.get('accepted', 0):,} labelled predictions"
    register = stages.get("register")
    if register:
        line += f", registered v{register['version']} ({register['status']})"
    failed = [
        c["name"]
        for c in (stages.get("gates") or {}).get("report", {}).get("checks", [])
        if c.get("applicable", True) and not c["passed"]
    ]
    if failed:
        line += f", gates failed: {', '.join(failed)}"
    if run.get("outcome"):
        line += f": {run['outcome']}"
    if run.get("error"):
        line += f": {run['error'].splitlines()[0]}"
    return line


def labelled_records() -> tuple[list[dict], list[int]]:
    """The sample's first live records as requests, and each one's true outcome (the feedback to send)."""
    import polars as pl

    from appliance.config import bundled_spec_path

    labels = pl.read_parquet(bundled_spec_path().parent / "live.parquet").head(RECORDS)["is_fraud"]
    return sample_records(RECORDS), [int(v) for v in labels]


if __name__ == "__main__":
    sys.exit(main())
