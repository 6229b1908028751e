"""One model's report as one HTML page: the monitoring story's dated charts and the newest window's
distributions, then the versions served, the alerts and the deployments with their verdicts.

The page is self-contained: inline CSS, inline SVG, no script, no font, no link to anything; its
Content-Security-Policy forbids fetching or running anything, so even a browser that opened a tampered copy
would load nothing. Every text from the data directory is escaped (``charts`` escapes what it draws)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape

import polars as pl

from appliance.alerts.records import Alert, list_alerts
from appliance.deployment.deployments import history
from appliance.home import Home
from appliance.monitoring.store import failing
from appliance.monitoring.story import (
    SCORE_DRAWN_UP_TO,
    Distribution,
    MonitoringStory,
    distributions,
    monitoring_story,
)
from appliance.report.charts import Band, Series, dated_bars, dated_lines, paired_bars

# One colour per feature (a second round of the same colours is dashed), and the other series' own colours,
# none shared with a feature's: a screenshot shows which chart drew what.
FEATURE_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#ad494a",
    "#637939",
)
ALARM = "#d62728"  # the alarm line at 1.0, a threshold, a ring around a point that alerted
REALIZED, ESTIMATED, BAND = "#08519c", "#e6550d", "#fdd0a2"
REQUESTS, P50, P99 = "#6baed6", "#31a354", "#756bb1"
REFERENCE, CURRENT = "#bdbdbd", "#3182bd"
ALL_FEATURES = "all features together"  # the '*' rows: drift of the inputs as a whole (reconstruction error)
MAX_ALERTS = 200  # the newest ones; `appliance alerts list --all` lists every one

STYLE = """
body { font: 14px/1.45 sans-serif; color: #222; margin: 0 auto; padding: 16px 24px; max-width: 1200px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin: 0; } .note { color: #555; margin: 2px 0 8px; }
.pair { display: flex; gap: 20px; flex-wrap: wrap; } .pair > div { flex: 0 0 580px; }
.grid { display: flex; gap: 12px 20px; flex-wrap: wrap; } .grid figure { margin: 0; flex: 0 0 380px; }
figcaption { font-weight: bold; margin: 6px 0 2px; } figcaption span { font-weight: normal; color: #555; }
.legend { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.swatch { display: inline-block; width: 14px; height: 4px; margin: 0 6px 3px 0; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eee; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; }
th { background: #f4f4f4; } .critical { color: #b00; font-weight: bold; } .empty { color: #555; font-style: italic; }
"""
# What the page may load: nothing but its own inline styles and images drawn inline.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@dataclass(frozen=True)
class ModelReport:
    page: str  # the HTML
    holds: str  # what the page holds, in one line: its windows, alerts and versions (`appliance report` prints it)


def model_report(home: Home, model: str, since: datetime | date | str | None = None) -> str:
    """The report of one registered model (NotFound otherwise) over the windows from ``since`` on, as HTML."""
    return written_report(home, model, since).page


def written_report(home: Home, model: str, since: datetime | date | str | None = None) -> ModelReport:
    """The report of one registered model (NotFound otherwise) over the windows from ``since`` on: its HTML,
    and one line saying what it holds."""
    story = monitoring_story(home, model, since)
    shown = (
        distributions(home, model, story.served_version, story.windows[-1])
        if story.served_version is not None and story.windows
        else []
    )
    first = story.windows[0] if since is not None and story.windows else None
    alerts = [a for a in list_alerts(home.conn, model, include_resolved=True, limit=MAX_ALERTS) if _about(a, first)]
    body = [_header(home, story, since)]
    broken = failing(home, model)
    if broken is not None:  # the windows below may be all there is until monitoring runs again
        body.append(f'<p class="critical" id="monitoring-failing">{escape(broken[0].upper() + broken[1:])}.</p>')
    if story.windows:
        body += [_drift(story), _performance(story), _traffic(story), _distributions(shown), _quality(story)]
    else:
        body.append(
            f'<p class="empty" id="no-results">No monitoring results for {escape(model)}'
            f"{f' since {escape(str(since))}' if since is not None else ''} yet: the monitor job writes them "
            f"(<code>appliance jobs run monitor {escape(model)}</code>, or on its schedule under "
            "<code>appliance up</code>).</p>"
        )
    body += [_versions(home, story), _alerts(alerts), _deployments(home, model)]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>{escape(model)}: monitoring report</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    holds = _holds(home, story, alerts)
    return ModelReport(page, holds if broken is None else f"{holds}; {broken}")


def _holds(home: Home, story: MonitoringStory, alerts: list[Alert]) -> str:
    """What the page holds, in one line: its windows (first .. last day), its alerts, the model's versions."""
    windows = (
        f"{_counted(len(story.windows), 'window')} {_day(story.windows[0])} .. {_day(story.windows[-1])}"
        if story.windows
        else f"no windows yet (`appliance jobs run monitor {story.model}` writes them)"
    )
    shown = f"the newest {MAX_ALERTS} alerts" if len(alerts) == MAX_ALERTS else _counted(len(alerts), "alert")
    unresolved = sum(a.status != "resolved" for a in alerts)
    production = home.registry.alias(story.model, "production")
    served = "none" if production is None else f"v{production}"
    versions = f"{_counted(len(home.registry.versions(story.model)), 'version')} ({served} in production)"
    return f"{windows}, {shown} ({unresolved} unresolved), {versions}"


def _counted(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _about(alert: Alert, first: datetime | None) -> bool:
    """Whether an alert belongs in a report from ``first`` on: its window ends after it (one about no window,
    a machine's, always does)."""
    end = _alert_time(alert.window_end)
    return first is None or end is None or end > first


def _alert_time(text: str | None) -> datetime | None:
    """An alert's window bound as a time (the rules store it as ISO text); None without one."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _header(home: Home, story: MonitoringStory, since: datetime | date | str | None) -> str:
    served = "none" if story.served_version is None else f"v{story.served_version}"
    if story.windows:
        counted = _counted(len(story.windows), "window")
        span = f"{_day(story.windows[0])} to {_day(story.windows[-1])} ({counted}, event time)"
    else:
        span = "no windows" + (f" since {since}" if since is not None else "")
    versions = ", ".join(f"v{v}" for v in story.versions) or "none"
    if len(story.eras) > 1:  # after a promotion the story runs on: each window told by the version that served it
        told = ", ".join(f"v{v} {_day(a)} to {_day(b)}" for v, a, b in story.eras)
        span += f" · each window told by the version that served it: {told}"
    return (
        f"<header><h1>{escape(story.model)}</h1>"
        f'<p class="meta">Monitoring report · served version {served} · versions with results: {versions}</p>'
        f'<p class="meta">Windows: {escape(span)} · data directory <code>{escape(str(home.root))}</code> · '
        f"written {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC</p></header>"
    )


def _drift(story: MonitoringStory) -> str:
    """One line per feature: its statistic furthest over its own threshold in each window."""
    worst = (
        story.drift.filter(pl.col("score").is_not_null())
        .sort("score", descending=True)
        .group_by("window_start", "feature", maintain_order=True)
        .agg(pl.all().first(), alerted=pl.col("alert").any())
    )
    features = sorted(worst["feature"].unique().to_list(), key=lambda f: (f == "prediction", f))
    series, legend = [], []
    for i, feature in enumerate(features):
        name = ALL_FEATURES if feature == "*" else feature
        by_window = {r["window_start"]: r for r in worst.filter(feature=feature).iter_rows(named=True)}
        rows = [by_window.get(w) for w in story.windows]
        colour = FEATURE_COLOURS[i % len(FEATURE_COLOURS)]
        dashed = i >= len(FEATURE_COLOURS)
        series.append(
            Series(
                name,
                colour,
                [min(r["score"], SCORE_DRAWN_UP_TO) if r else None for r in rows],
                dashed=dashed,
                alerts=[bool(r and r["alerted"]) for r in rows],
                tips=[
                    f"{name}, {_day(w)}: {r['method']} {r['value']:.4g} against {r['threshold']:.4g} "
                    f"= {r['score']:.2f}{' (alert)' if r['alerted'] else ''}"
                    if r
                    else ""
                    for w, r in zip(story.windows, rows)
                ],
            )
        )
        legend.append((name, colour, dashed))
    alarm = Series("alarm line (1.0)", ALARM, [1.0] * len(story.windows), dashed=True, markers=False)
    chart = (
        dated_lines(story.windows, [alarm, *series], "Drift per feature", from_zero=True)
        if series
        else '<p class="empty">No drift statistic with a threshold in these windows.</p>'
    )
    return (
        '<section id="drift"><h2>Drift per feature</h2><p class="note">Each feature\'s statistic against its own '
        "threshold (PSI, KS and Jensen–Shannon on one scale): 1.0 is the alarm line; a ringed point alerted. "
        f"Drawn up to {SCORE_DRAWN_UP_TO:g}, so one window far past its line does not flatten the rest; hover a "
        "point for its figures.</p>"
        f"{chart}{_legend([('alarm line (1.0)', ALARM, True), *legend])}</section>"
    )


def _performance(story: MonitoringStory) -> str:
    p = story.performance
    realized, estimated = p["realized"].to_list(), p["estimated"].to_list()
    direction = "lower is better: an alert above" if story.lower_is_better else "higher is better: an alert below"
    note = (
        f"{escape(story.metric)} per window, realized from labels and estimated without them ({direction} the "
        "threshold)."
    )
    if all(v is None for v in realized + estimated):
        chart = '<p class="empty">No realized or estimated performance in these windows (no labels, no estimate).</p>'
    else:
        rows = p.iter_rows(named=True)
        tips = [
            f"{_day(r['window_start'])}: realized {_figure(r['realized'])} on {r['labelled']} labels, estimated "
            f"{_figure(r['estimated'])} [{_figure(r['lower'])}, {_figure(r['upper'])}], "
            f"threshold {_figure(r['threshold'])}"
            for r in rows
        ]
        chart = dated_lines(
            story.windows,
            [
                Series("threshold", ALARM, p["threshold"].to_list(), dashed=True, markers=False),
                Series("estimated", ESTIMATED, estimated, dashed=True, tips=tips),
                Series("realized", REALIZED, realized, alerts=p["alert"].to_list(), tips=tips),
            ],
            f"{story.metric}: realized and estimated",
            band=Band(BAND, p["lower"].to_list(), p["upper"].to_list()),
        )
    legend = [("realized", REALIZED, False), ("estimated", ESTIMATED, True), ("estimate's band", BAND, False)]
    return (
        f'<section id="performance"><h2>Performance: {escape(story.metric)}</h2><p class="note">{note}</p>{chart}'
        f"{_legend([*legend, ('threshold', ALARM, True)])}</section>"
    )


def _traffic(story: MonitoringStory) -> str:
    t = story.traffic
    days = [_day(w) for w in story.windows]
    served = story.performance["rows"].to_list()  # predictions: a request may carry many rows
    tips = [
        f"{day}: {_figure(rows)} predictions in {_figure(n)} requests, error rate {_figure(e, '.2%')}"
        for day, rows, n, e in zip(days, served, t["requests"], t["error_rate"])
    ]
    latency = [
        f"{day}: p50 {_figure(a)} ms, p99 {_figure(b)} ms"
        for day, a, b in zip(days, t["latency_p50_ms"], t["latency_p99_ms"])
    ]
    return (
        '<section id="traffic"><h2>Traffic and latency</h2><div class="pair"><div>'
        + dated_bars(story.windows, served, REQUESTS, "Predictions per window", tips)
        + _legend([("predictions served", REQUESTS, False)])
        + "</div><div>"
        + dated_lines(
            story.windows,
            [
                Series("p50 ms", P50, t["latency_p50_ms"].to_list(), tips=latency),
                Series("p99 ms", P99, t["latency_p99_ms"].to_list(), tips=latency),
            ],
            "Latency per window (ms)",
            width=580,
            height=240,
            from_zero=True,
        )
        + _legend([("p50 ms", P50, False), ("p99 ms", P99, False)])
        + "</div></div></section>"
    )


def _distributions(shown: Sequence[Distribution]) -> str:
    if not shown:
        return (
            '<section id="distributions"><h2>Distributions</h2><p class="empty">No distributions recorded for the '
            "newest window (windows monitored before the appliance recorded them have none).</p></section>"
        )
    figures = [
        f"<figure><figcaption>{escape(d.feature)} <span>{d.kind}: {d.reference_rows} reference rows, "
        f"{d.current_rows} in the window</span></figcaption>"
        + paired_bars(d.labels, d.reference, d.current, (REFERENCE, CURRENT), f"{d.feature}: reference and current")
        + "</figure>"
        for d in shown
    ]
    return (
        f'<section id="distributions"><h2>Distributions: window of {_day(shown[0].window_start)}</h2>'
        f"<p class=\"note\">Each feature's share of rows per bin (numbers: the reference's deciles) or category, "
        f"in the reference and in the newest window.</p>"
        f"{_legend([('reference', REFERENCE, False), ('current window', CURRENT, False)])}"
        f'<div class="grid">{"".join(figures)}</div></section>'
    )


def _quality(story: MonitoringStory) -> str:
    alerted = story.quality.filter(pl.col("alert"))
    rows = [
        (
            _day(r["window_start"]),
            r["feature"],
            r["method"],
            _figure(r["value"]),
            _figure(r["threshold"]),
            str(r["rows"]),
        )
        for r in alerted.iter_rows(named=True)
    ]
    return (
        '<section id="quality"><h2>Data quality: checks that alerted</h2>'
        + _table(("window", "feature", "check", "value", "threshold", "rows"), rows, "No quality check alerted.")
        + "</section>"
    )


def _versions(home: Home, story: MonitoringStory) -> str:
    production = home.registry.alias(story.model, "production")
    versions = [
        (
            f"v{v.version}" + (" (production)" if v.version == production else ""),
            v.status,
            _moment(v.created_at),
            _figure(v.metrics.get(story.metric)),
            v.run_id,
        )
        for v in home.registry.versions(story.model)
    ]
    changes = [
        (_moment(e.at), f"v{e.version}", e.action, e.actor, str(e.detail.get("reason") or ""))
        for e in home.registry.production_history(story.model)
    ]
    return (
        '<section id="versions"><h2>Versions served</h2>'
        + _table(
            ("version", "status", "registered", f"{story.metric} at evaluation", "run"), versions, "No versions yet."
        )
        + '<p class="note">Production over time (UTC): each promotion and rollback.</p>'
        + _table(("when", "now serving", "change", "by", "reason"), changes, "Nothing was ever promoted.")
        + "</section>"
    )


def _alerts(alerts: list[Alert]) -> str:
    rows = [
        (
            str(a.id),
            f'<span class="{escape(a.severity)}">{escape(a.severity)}</span>',
            escape(a.status),
            escape(f"{a.rule} ({a.target})"),
            escape(a.message),
            escape(_day(start) if (start := _alert_time(a.window_start)) else a.window_start or "-"),
            str(a.count),
            _moment(a.first_seen),
            _moment(a.resolved_at) if a.resolved_at else "-",
        )
        for a in alerts
    ]
    return (
        '<section id="alerts"><h2>Alerts</h2>'
        + _table(
            ("#", "severity", "status", "rule", "message", "latest window", "times", "opened", "resolved"),
            rows,
            "No alerts.",
            wrap=4,
            escaped=True,
        )
        + "</section>"
    )


def _deployments(home: Home, model: str) -> str:
    rows = [
        (
            str(d.id),
            d.strategy,
            f"v{d.candidate_version} against v{d.baseline_version}",
            d.status,
            _moment(d.started_at),
            _moment(d.ended_at) if d.ended_at else "-",
            d.reason or "-",
        )
        for d in reversed(history(home, model))
    ]
    return (
        '<section id="deployments"><h2>Deployments and their verdicts</h2>'
        + _table(("#", "strategy", "candidate", "status", "started", "ended", "verdict"), rows, "No deployments.")
        + "</section>"
    )


def _legend(entries: Sequence[tuple[str, str, bool]]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour}{";opacity:.6" if dashed else ""}"></span>'
        f"{escape(name)}</li>"
        for name, colour, dashed in entries
    )
    return f'<ul class="legend">{items}</ul>'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], empty: str, wrap: int = -1, escaped: bool = False
) -> str:
    """An HTML table whose cells stay on one line but in column ``wrap`` (the long text: a message, a reason);
    cells are escaped here unless the caller built (and escaped) their markup."""
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    wrapped = wrap % len(header)
    body = "".join(
        "<tr>"
        + "".join(
            ('<td class="wrap">' if i == wrapped else "<td>") + (cell if escaped else escape(cell)) + "</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _day(moment: datetime) -> str:
    """A window's start: its day, and its time where it does not start at midnight."""
    return f"{moment:%Y-%m-%d}" if moment.hour == 0 and moment.minute == 0 else f"{moment:%Y-%m-%d %H:%M}"


def _moment(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S}"


def _figure(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)
