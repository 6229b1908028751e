"""The monitoring tables keep each version's rows on its own line, and say when realized performance and its
estimate disagree beyond the band (the estimate cannot see concept drift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from appliance.monitoring.report import estimate_disagreements, monitor_report
from appliance.monitoring.store import RESULT_SCHEMA

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def _rows(version: int, auc: float, estimate: tuple[float, float, float], rows: int) -> list[dict]:
    common = {
        "model": "churn",
        "version": version,
        "window_start": DAY,
        "window_end": DAY + timedelta(days=1),  # a data window spans its day (a run's own row is an instant)
        "feature": "*",
        "threshold": None,
        "rows": rows,
        "alert": False,
        "computed_at": 1.0,
    }
    low, mid, high = estimate
    return [
        {**common, "check": "performance", "method": "auc", "value": auc},
        *(
            {**common, "check": "estimated", "method": m, "value": v}
            for m, v in (("auc", mid), ("auc_lower", low), ("auc_upper", high))
        ),
        {**common, "check": "serving", "method": "latency_p99_ms", "value": 3.0},
    ]


def _frame(*parts: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([row for part in parts for row in part], schema=RESULT_SCHEMA)


def test_two_versions_on_one_day_are_two_lines_never_mixed():
    # v1 served the morning, v2 the afternoon: each has its own AUC and estimate.
    frame = _frame(_rows(1, 0.81, (0.78, 0.80, 0.82), 700), _rows(2, 0.93, (0.90, 0.92, 0.94), 900))
    performance = monitor_report(frame, "performance")
    assert performance[0].split()[:3] == ["window", "version", "labelled"]
    assert [line.split()[:4] for line in performance[1:]] == [
        ["2026-03-02", "v1", "700", "0.81"],
        ["2026-03-02", "v2", "900", "0.93"],
    ]
    overview = monitor_report(frame, None)
    assert [line.split()[:2] for line in overview[1:]] == [["2026-03-02", "v1"], ["2026-03-02", "v2"]]
    assert estimate_disagreements(frame) == []


def test_a_realized_value_outside_the_estimates_band_is_named_as_concept_drift():
    # Inputs unchanged, outcomes no longer follow them: CBPE still estimates 0.88, the labels say 0.5.
    frame = _frame(_rows(3, 0.50, (0.85, 0.88, 0.91), 1200))
    [found] = estimate_disagreements(frame)
    assert (found.version, found.metric, found.realized, found.labelled) == (3, "auc", 0.50, 1200)
    lines = monitor_report(frame, "performance")
    assert any("concept drift" in line for line in lines)
    assert "  2026-03-02 v3: auc 0.5 from 1,200 labelled rows, estimated 0.88 [0.85, 0.91]" in lines
    # Inside the band, nothing is said.
    assert estimate_disagreements(_frame(_rows(3, 0.86, (0.85, 0.88, 0.91), 1200))) == []
