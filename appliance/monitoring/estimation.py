"""The NannyML boundary: CBPE performance estimates and data-reconstruction drift, per window.

pandas lives here and nowhere else. NannyML is handed each row's *window start* as its
timestamp and chunks by the hour, so its chunks are exactly our event-time windows (of an hour
or longer) whatever calendar rules pandas' periods follow. The reference must be the model's
held-out evaluation window with its out-of-sample scores and labels: in-sample training scores
make CBPE over-confident.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from appliance.errors import InvalidInput
from appliance.monitoring.performance import ALL, performance_by_window
from appliance.monitoring.rules import MonitoringSection
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature

WINDOW = "_window_start"
PREDICTED = "_predicted"
ESTIMATE_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
    "estimated_auc": pl.Float64,
    "lower": pl.Float64,               # CBPE's band: estimate -/+ 3 sampling errors, clipped to 0..1
    "upper": pl.Float64,
    "realized_auc": pl.Float64,        # from the labels that have arrived; null before
    "threshold": pl.Float64,
    "alert": pl.Boolean,
}
RECONSTRUCTION_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
    "reconstruction_error": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "threshold": pl.Float64,           # NannyML's: reference mean + 3 standard deviations
    "alert": pl.Boolean,
}


def estimate_auc(reference: pl.DataFrame, frame: pl.DataFrame, windows: EventWindows, event_time: str,
                 score: str, label: str, decision_threshold: float,
                 rules: MonitoringSection) -> pl.DataFrame:
    """CBPE's ROC AUC estimate per window with its confidence band, beside the realized AUC."""
    import nannyml

    if reference[label].drop_nulls().n_unique() < 2:
        raise InvalidInput("the CBPE reference needs labelled rows of both classes")
    predicted = (pl.col(score) >= decision_threshold).cast(pl.Int8).alias(PREDICTED)
    ref = _to_pandas(reference.with_columns(predicted), EventWindows(reference, event_time, windows.every),
                     [score, PREDICTED, label])
    cur = _to_pandas(frame.with_columns(predicted), windows, [score, PREDICTED])
    cbpe = nannyml.CBPE(y_pred_proba=score, y_pred=PREDICTED, y_true=label, timestamp_column_name=WINDOW,
                        metrics=["roc_auc"], chunk_period="h", problem_type="classification_binary")
    result = _by_window(cbpe.fit(ref).estimate(cur), "roc_auc", windows)
    rows = windows.rows()
    estimate = result.get("value", np.nan)
    return pl.DataFrame({
        "window_start": windows.starts,
        "rows": rows,
        "estimated_auc": estimate,
        "lower": result.get("lower_confidence_boundary", np.nan),
        "upper": result.get("upper_confidence_boundary", np.nan),
        "realized_auc": _realized_auc(frame, windows, label, score, decision_threshold, rules),
        "threshold": [rules.performance.auc_floor] * windows.count,
        "alert": (estimate < rules.performance.auc_floor) & (rows >= rules.min_window_rows),
    }, schema=ESTIMATE_SCHEMA).with_columns(pl.col(pl.Float64).fill_nan(None))


def reconstruction_drift(reference: pl.DataFrame, frame: pl.DataFrame, windows: EventWindows,
                         event_time: str, features: list[Feature]) -> pl.DataFrame:
    """NannyML's multivariate drift: PCA reconstruction error per window against the reference's band."""
    import nannyml

    names = [f.name for f in features]
    categorical = [f.name for f in features if f.type in ("category", "boolean")]
    ref = _to_pandas(reference, EventWindows(reference, event_time, windows.every), names, categorical)
    cur = _to_pandas(frame, windows, names, categorical)
    calculator = nannyml.DataReconstructionDriftCalculator(column_names=names, timestamp_column_name=WINDOW,
                                                           chunk_period="h")
    result = _by_window(calculator.fit(ref).calculate(cur), "reconstruction_error", windows)
    error = result.get("value", np.nan)
    return pl.DataFrame({
        "window_start": windows.starts,
        "rows": windows.rows(),
        "reconstruction_error": error,
        "lower": result.get("lower_confidence_boundary", np.nan),
        "upper": result.get("upper_confidence_boundary", np.nan),
        "threshold": result.get("upper_threshold", np.nan),
        "alert": np.nan_to_num(result.get("alert", np.zeros(windows.count))) > 0,
    }, schema=RECONSTRUCTION_SCHEMA).with_columns(pl.col(pl.Float64).fill_nan(None))


def _to_pandas(frame: pl.DataFrame, windows: EventWindows, columns: list[str],
               categorical: list[str] = ()) -> pd.DataFrame:
    """The rows inside a window, with their window start as a naive UTC timestamp."""
    starts = windows.starts.dt.replace_time_zone(None)
    inside = windows.code >= 0
    selected = frame.select(columns).filter(pl.Series(inside)).with_columns(
        starts.gather(windows.code[inside]).alias(WINDOW),
        *(pl.col(c).cast(pl.String) for c in categorical))
    out = selected.to_pandas()
    for c in categorical:   # pandas 3 strings are not what NannyML recognises as categorical
        out[c] = out[c].astype("category")
    return out


def _by_window(result, metric: str, windows: EventWindows) -> dict[str, np.ndarray]:
    """NannyML's per-chunk columns for one metric, placed at our windows (a window without a chunk: NaN)."""
    table = result.filter(period="analysis").to_df()
    start = next(c for c in table.columns if c[0] == "chunk" and c[-1] == "start_date")
    keys = pd.to_datetime(table[start]).to_numpy().astype("datetime64[us]").astype(np.int64)
    starts = windows.starts.to_physical().to_numpy()
    at = np.searchsorted(starts, keys)
    if not np.array_equal(starts[np.minimum(at, starts.size - 1)], keys):
        raise RuntimeError("NannyML's chunks do not line up with the event-time windows")
    placed = {}
    for column in table.columns:
        if column[0] == metric:
            values = np.full(windows.count, np.nan)
            values[at] = table[column].to_numpy(dtype=np.float64, na_value=np.nan)
            placed[column[-1]] = values
    return placed


def _realized_auc(frame: pl.DataFrame, windows: EventWindows, label: str, score: str,
                  decision_threshold: float, rules: MonitoringSection) -> np.ndarray | float:
    if label not in frame.columns:
        return np.nan
    realized = performance_by_window(frame, windows, label, score, decision_threshold, rules)
    return realized.filter((pl.col("feature") == ALL) & (pl.col("method") == "auc"))["value"] \
        .fill_null(np.nan).to_numpy()
