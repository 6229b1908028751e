"""The HTML report (`appliance report`, `GET /v1/models/{name}/report`) opened in a real headless Chromium with
networking off: a screenshot is taken and its pixels checked for each chart's series, the page's DOM after
rendering for what it says; on the sample after live traffic, on a multiclass model through the CLI, on a model
without results, and with data whose texts are markup."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from appliance.alerts import actions
from appliance.deployment import deployments
from appliance.home import Home
from appliance.monitoring.store import RESULT_SCHEMA, begin_job_run, end_job_run, open_monitoring, write_results
from appliance.report.page import (
    ALARM,
    BAND,
    CURRENT,
    ESTIMATED,
    FEATURE_COLOURS,
    P50,
    P99,
    REALIZED,
    REFERENCE,
    REQUESTS,
)
from appliance.scheduler.jobs import run_job
from appliance.spec import load_spec
from tests.conftest import cli, ok
from tests.test_monitoring_job import DAYS, post_labels, send_days

WIDTH, HEIGHT = 1280, 2400


def browser() -> str:
    """The headless Chromium scripts/install-browser provides."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium on PATH: scripts/install-browser installs it (apt-get install chromium)")


def open_in_browser(page: Path, scratch: Path) -> tuple[np.ndarray, str]:
    """The page rendered offline: (its screenshot as an RGB array, its DOM after rendering)."""
    scratch.mkdir(exist_ok=True)
    png = scratch / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={scratch / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
    ]
    subprocess.run(
        [browser(), *flags, f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=180
    )
    dom = subprocess.run(
        [browser(), *flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=180
    ).stdout
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB")), dom


def pixels(shot: np.ndarray, colour: str) -> tuple[int, int]:
    """How many pixels are exactly ``colour``, and how wide (in pixels) the area they cover is."""
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    _, xs = np.nonzero((shot == rgb).all(axis=2))
    return len(xs), (int(xs.max() - xs.min()) if len(xs) else 0)


def section(page: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert found, f"no section {name}"
    return found.group(1)


def assert_self_contained(page: str) -> None:
    """Nothing a browser would fetch: no URL at all, no script, no source, no stylesheet or font to load."""
    assert not re.search(r"https?:|//[a-z]", page, re.I), re.search(r".{40}https?:.{40}", page)
    for fetching in ("<script", " src=", "<link", "@import", "url(", "<iframe", "<object"):
        assert fetching not in page.lower(), fetching


def test_the_samples_report_after_live_traffic_in_a_headless_browser(server, tmp_path: Path):
    sent = send_days(server)
    post_labels(server, sent[DAYS[0]] + sent[DAYS[2]])  # 10-19's labels have not arrived: no realized AUC there
    with Home(server.home) as home:
        deployments.start(home, "fraud", "canary", 2)
        deployments.abort(home, "fraud", reason="error rate 4.1% against 2.0%: rolled back")
    run = run_job(server.home, "monitor", "fraud")
    assert run.status == "succeeded", run.error
    assert actions.wait_for_actions(300)  # 10-20's AUC fell: the critical rule's retrain runs to its end

    path = tmp_path / "fraud.html"
    assert ok(server.home, "report", "fraud", "--out", str(path)).startswith(f"wrote {path}: ")
    page = path.read_text()
    assert_self_contained(page)
    served = server.client.get("/v1/models/fraud/report")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert section(served.text, "drift") == section(page, "drift")  # the same page, but for when it was written
    assert "2026-10-18 to 2026-10-20 (3 windows, event time)" in page

    shot, dom = open_in_browser(path, tmp_path / "browser")
    assert dom.count("<svg") >= 4 and "Drift per feature" in dom and "amount" in section(dom, "drift")
    drift = section(page, "drift")
    features = re.findall(r'<span class="swatch" style="background:(#[0-9a-f]{6})', drift)[1:]  # the alarm first
    assert len(features) >= 5 and set(features) <= set(FEATURE_COLOURS)
    plot = 1180 - 70
    for colour in features:  # each feature's line runs across the dated axis, 10-18 to 10-20
        count, width = pixels(shot, colour)
        assert count > 30 and width > plot / 2, (colour, count, width)
    for colour in (ALARM, REALIZED, ESTIMATED, BAND, P50, P99, REQUESTS):
        count, width = pixels(shot, colour)
        assert count > 30 and width > 200, (colour, count, width)
    for colour in (REFERENCE, CURRENT):  # the paired bars of the newest window's distributions
        assert pixels(shot, colour)[0] > 200, colour

    alerts = section(dom, "alerts")
    assert "accuracy-critical" in alerts and "critical" in alerts
    verdicts = section(dom, "deployments")
    assert (
        "canary" in verdicts and "error rate 4.1% against 2.0%: rolled back" in verdicts and "v2 against v1" in verdicts
    )
    assert "promote" in section(dom, "versions") and "v1 (production)" in section(dom, "versions")
    assert "auc" in section(dom, "performance")

    later = server.client.get("/v1/models/fraud/report", params={"since": "2026-10-20"})
    assert later.status_code == 200 and "2026-10-20 to 2026-10-20 (1 window, event time)" in later.text
    assert server.client.get("/v1/models/fraud/report", params={"since": "10/20"}).status_code == 422
    assert server.client.get("/v1/models/nope/report").status_code == 404


def test_a_multiclass_models_report_through_the_cli(tmp_path: Path, monkeypatch):
    from tests.task_data import write_tickets
    from tests.test_monitoring_tasks import MULTICLASS, log_traffic, post_feedback, register, ticket_model, tickets

    folder, root = tmp_path / "tickets", tmp_path / "home"
    spec = load_spec(write_tickets(folder, name="triage", per_day=1500))
    history, live = tickets(folder / "tickets.csv"), tickets(folder / "live.csv")
    evaluation = history.filter(pl.col("opened") >= history["opened"].max().date() - timedelta(days=2))
    with Home(root) as home:
        home.add_model(spec)
        version = register(home, spec, MULTICLASS, evaluation, ticket_model(evaluation))
    fields = ["opened", "words", "channel", "attachment", "hour"]
    requests = log_traffic(root, spec, MULTICLASS, version, live, ticket_model(live), fields)
    truth = MULTICLASS.codes(live["team"].to_list())
    post_feedback(root, "triage", requests, truth.tolist(), keep=np.ones(len(truth), dtype=bool))
    assert run_job(root, "monitor", "triage").status == "succeeded"
    assert actions.wait_for_actions(300)  # whatever the rules started has ended before the folder goes

    monkeypatch.chdir(tmp_path)
    assert ok(root, "report", "triage").startswith("wrote triage-report.html: ")
    page = (tmp_path / "triage-report.html").read_text()
    assert_self_contained(page)
    shot, dom = open_in_browser(tmp_path / "triage-report.html", tmp_path / "browser")
    assert "Performance: macro_f1" in dom and "higher is better" in dom
    assert "channel" in section(dom, "distributions") and "words" in section(dom, "distributions")
    for colour in (REALIZED, ESTIMATED, BAND, REFERENCE, CURRENT, FEATURE_COLOURS[0]):
        assert pixels(shot, colour)[0] > 30, colour
    assert "(3 windows, event time)" in page

    since = ok(root, "report", "triage", "--since", str(live["opened"].max().date()), "--out", "late.html")
    assert (
        since.startswith("wrote late.html: 1 window ")
        and "(1 window, event time)" in (tmp_path / "late.html").read_text()
    )

    for args, message in (
        (["--since", "yesterday"], "is not a date like"),
        (["--out", "missing/folder/r.html"], "does not exist"),
        (["--out", "."], "is a directory"),
    ):
        code, _, err = cli(root, "report", "triage", *args)
        assert code == 1 and err.startswith("error: ") and message in err and "Traceback" not in err, err
    code, _, err = cli(root, "report", "nope", "--out", "nope.html")
    assert code == 1 and "nope" in err and not (tmp_path / "nope.html").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_a_model_without_results_gets_a_page_that_says_so(home_dir: Path, tmp_path: Path):
    path = tmp_path / "empty.html"
    ok(home_dir, "report", "fraud", "--out", str(path))
    page = path.read_text()
    assert_self_contained(page)
    _, dom = open_in_browser(path, tmp_path / "browser")
    assert 'id="no-results"' in dom and "No monitoring results for fraud yet" in dom and "<svg" not in dom
    assert "v1 (production)" in section(dom, "versions") and "No alerts." in section(dom, "alerts")


def test_a_failing_monitor_job_is_said_where_its_missing_results_are_read(home_dir: Path, tmp_path: Path):
    """A monitor run that keeps failing leaves the results as they were: the table and the report say
    monitoring has stopped, and why, instead of presenting the old windows (or none) as all there is."""
    conn = open_monitoring(home_dir)
    try:
        run = begin_job_run(conn, "monitor", "fraud", "schedule")
        end_job_run(conn, run, "failed", "ChunkerException: could not split data into chunks\nTraceback …")
    finally:
        conn.close()
    code, _, err = cli(home_dir, "monitor", "fraud")
    assert (
        code == 0
        and err.startswith("warning: monitoring has stopped: the newest monitor run of 'fraud'")
        and "failed: Chunker" in err
    )
    assert "Traceback" not in err and "appliance jobs run monitor fraud" in err
    path = tmp_path / "failing.html"
    out = ok(home_dir, "report", "fraud", "--out", str(path))
    assert "monitoring has stopped: the newest monitor run" in out
    assert 'id="monitoring-failing"' in path.read_text()
    ok(home_dir, "jobs", "run", "monitor", "fraud")  # it runs again: nothing is said any more
    assert cli(home_dir, "monitor", "fraud")[2] == ""


def test_texts_from_the_data_are_shown_as_text_never_as_markup(home_dir: Path, tmp_path: Path):
    """A feature named like a script, a deployment's reason that is an image tag: rendered as text, run never."""
    feature, reason = "<script>document.title='owned'</script>", '<img src=x onerror="document.title=1">'
    start = datetime(2026, 10, 18, tzinfo=UTC)
    rows = [
        {
            "model": "fraud",
            "version": 1,
            "window_start": start + timedelta(days=d),
            "window_end": start + timedelta(days=d + 1),
            "check": "drift",
            "feature": feature,
            "method": "psi",
            "value": 0.1 * (d + 1),
            "threshold": 0.2,
            "rows": 500,
            "alert": d == 2,
            "computed_at": 0.0,
        }
        for d in range(3)
    ]
    conn = open_monitoring(home_dir)
    try:
        write_results(conn, pl.DataFrame(rows, schema=RESULT_SCHEMA))
    finally:
        conn.close()
    with Home(home_dir) as home:
        deployments.start(home, "fraud", "blue-green", 2)
        deployments.abort(home, "fraud", reason=reason)

    path = tmp_path / "marked.html"
    ok(home_dir, "report", "fraud", "--out", str(path))
    _, dom = open_in_browser(path, tmp_path / "browser")
    assert "<title>fraud: monitoring report</title>" in dom  # no script ran to retitle it
    assert "<script" not in dom and "<img" not in dom
    assert "&lt;script&gt;document.title='owned'&lt;/script&gt;" in section(dom, "drift")
    assert "&lt;img src=x onerror=" in section(dom, "deployments")
