"""The NannyML boundary: performance estimates without labels and data-reconstruction drift, per window.

Performance is estimated by task: CBPE for classifiers (binary ROC AUC; multiclass accuracy and macro F1,
from the calibrated probability of each class), DLE for regression (RMSE and MAE, from a LightGBM model of
each row's error fitted on the reference's features and predictions).

pandas lives here and nowhere else. NannyML is handed each row's *window start* as its
timestamp and chunks by the hour, so its chunks are exactly our event-time windows (of an hour
or longer) whatever calendar rules pandas' periods follow. The reference must be the model's
held-out evaluation window with its out-of-sample outputs and labels: in-sample training outputs
make CBPE over-confident and DLE's error model too optimistic.
"""

from __future__ import annotations

import contextlib
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import polars as pl

from appliance.errors import InvalidInput
from appliance.monitoring import drift
from appliance.monitoring.performance import (
    ALL,
    performance_by_window,
    task_performance_by_window,
)
from appliance.monitoring.reference import PREDICTED as CHOSEN
from appliance.monitoring.reference import SCORE, proba_columns
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection
from appliance.task import Task, higher_is_better

WINDOW = "_window_start"
PREDICTED = "_predicted"  # a binary model's label at the decision threshold (multiclass: CHOSEN, stored)
# Per window and estimated metric, beside the realized value (one row per window and metric).
TASK_ESTIMATE_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
    "method": pl.String,  # our name of the metric: auc, accuracy, macro_f1, rmse, mae
    "estimated": pl.Float64,
    "lower": pl.Float64,  # the band: estimate -/+ 3 sampling errors, clipped to the metric's range
    "upper": pl.Float64,
    "realized": pl.Float64,  # from the labels that have arrived; null before
    "threshold": pl.Float64,  # the judging metric's limit; null for the others
    "alert": pl.Boolean,
}
# The metrics NannyML estimates per task: our name and NannyML's.
ESTIMATED: dict[str, dict[str, str]] = {
    "binary": {"auc": "roc_auc"},
    "multiclass": {"accuracy": "accuracy", "macro_f1": "f1"},  # NannyML's multiclass F1 is the macro average
    "regression": {"rmse": "rmse", "mae": "mae"},
}
RECONSTRUCTION_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"),
    "rows": pl.Int64,
    "reconstruction_error": pl.Float64,
    "lower": pl.Float64,  # the band: the error -/+ 3 sampling errors (NannyML's, averaged over the fits)
    "upper": pl.Float64,
    "threshold": pl.Float64,  # per window: out-of-sample mean + the larger of floor and chance (reconstruction_drift)
    "alert": pl.Boolean,
}
RECONSTRUCTION_BAND = ("lower_confidence_boundary", "upper_confidence_boundary")  # NannyML's names of the band
# Fits per reference, each on all folds but one and scored on the one it did not see; on the sample's
# monitor job (31k reference rows, 15 days of 3,000) the five take 0.95 s where one fit took 0.55 s.
RECONSTRUCTION_FOLDS = 5
MIN_FOLD_ROWS = 50  # fewer held-out rows per fold give no level to judge a window by: no threshold
# The held-out level errs by more than its rows alone say: by 1.2 times sd/sqrt(m) over 100 simulated
# 500-row references (folds' fits differ), so a reference's rows count half in the chance bound.
REFERENCE_ROW_WEIGHT = 0.5
# Rows a window needs for NannyML to measure it (see _measured): with pandas 3, NannyML cannot chunk a frame of one row.
MIN_MEASURED_ROWS = 2


def estimate_auc(
    reference: pl.DataFrame,
    frame: pl.DataFrame,
    windows: EventWindows,
    event_time: str,
    score: str,
    label: str,
    decision_threshold: float,
    rules: MonitoringSection,
) -> pl.DataFrame:
    """CBPE's ROC AUC estimate per window with its confidence band, beside the realized AUC (TASK_ESTIMATE_SCHEMA)."""
    import nannyml

    if reference[label].drop_nulls().n_unique() < 2:
        raise InvalidInput("the CBPE reference needs labelled rows of both classes")
    predicted = (pl.col(score) >= decision_threshold).cast(pl.Int8).alias(PREDICTED)
    ref = _to_pandas(
        reference.with_columns(predicted), EventWindows(reference, event_time, windows.every), [score, PREDICTED, label]
    )
    cbpe = nannyml.CBPE(
        y_pred_proba=score,
        y_pred=PREDICTED,
        y_true=label,
        timestamp_column_name=WINDOW,
        metrics=["roc_auc"],
        chunk_period="h",
        problem_type="classification_binary",
    )
    measured = _measured(windows)
    result: dict[str, np.ndarray] = {}  # no window holds enough rows: nothing to estimate
    if measured.any():
        cur = _to_pandas(frame.with_columns(predicted), windows, [score, PREDICTED], rows=measured)
        result = _by_window(cbpe.fit(ref).estimate(cur), "roc_auc", windows)
    rows = windows.rows()
    estimate = result.get("value", np.nan)
    realized: np.ndarray | float = np.nan  # no label column: nothing realized yet
    if label in frame.columns:
        by_window = performance_by_window(frame, windows, label, score, decision_threshold, rules)
        auc = by_window.filter((pl.col("feature") == ALL) & (pl.col("method") == "auc"))["value"]
        realized = auc.fill_null(np.nan).to_numpy()
    return pl.DataFrame(
        {
            "window_start": windows.starts,
            "rows": rows,
            "method": ["auc"] * windows.count,
            "estimated": estimate,
            "lower": result.get("lower_confidence_boundary", np.nan),
            "upper": result.get("upper_confidence_boundary", np.nan),
            "realized": realized,
            "threshold": [rules.performance.auc_floor] * windows.count,
            "alert": (estimate < rules.performance.auc_floor) & (rows >= rules.min_window_rows),
        },
        schema=TASK_ESTIMATE_SCHEMA,
    ).with_columns(pl.col(pl.Float64).fill_nan(None))


def estimate_performance(
    reference: pl.DataFrame,
    frame: pl.DataFrame,
    windows: EventWindows,
    event_time: str,
    label: str,
    task: Task,
    metric: str,
    features: list[Feature],
    rules: MonitoringSection,
) -> pl.DataFrame:
    """The task's performance estimated without labels per window (TASK_ESTIMATE_SCHEMA), beside the realized
    value of the same metric from the labels that arrived.

    Both frames hold the model's output in the reference's columns (``reference.output_columns``) and the
    label as the task reads it (a class index, a value) in ``label``; the reference's labels must be known.
    ``metric`` judges the model: an estimate of it alerts past ``rules.performance.limit(metric)``. DLE also
    reads the model's inputs: ``features`` (those both frames hold)."""
    if task.kind == "binary":
        return estimate_auc(reference, frame, windows, event_time, SCORE, label, task.threshold, rules)
    reference = reference.filter(pl.col(label).is_not_null() & pl.col(SCORE).is_not_null())
    if reference[label].n_unique() < 2:
        raise InvalidInput(
            f"the {'CBPE' if task.classifier else 'DLE'} reference needs labelled rows of at least "
            f"two {'classes' if task.classifier else 'values'}"
        )
    measured = _measured(windows, _with_output(frame, task))
    result = None  # no window holds enough answered rows: nothing to estimate
    if measured.any():
        ref_windows = EventWindows(reference, event_time, windows.every)

        def frames(columns: list[str], categorical: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
            """The labelled reference and the windows' answered rows, as NannyML reads them."""
            return (
                _to_pandas(reference, ref_windows, [*columns, label], categorical),
                _to_pandas(frame, windows, columns, categorical, rows=measured),
            )

        if task.kind == "multiclass":
            probabilities = dict(enumerate(proba_columns(task)))
            result = _cbpe_multiclass(*frames([*probabilities.values(), CHOSEN], []), probabilities, label)
        else:
            inputs = [f for f in features if f.name in reference.columns and f.name in frame.columns]
            names = [f.name for f in inputs]
            categorical = [f.name for f in inputs if f.type in ("category", "boolean")]
            result = _dle(*frames([*names, SCORE], categorical), names, label)
    rows = windows.rows()
    realized = _realized(frame, windows, label, task, metric, rules)
    parts = []
    for ours, theirs in ESTIMATED[task.kind].items():
        placed = {} if result is None else _by_window(result, theirs, windows)
        estimate = placed.get("value", np.full(windows.count, np.nan))
        limit = rules.performance.limit(ours) if ours == metric else np.nan
        past = estimate < limit if higher_is_better(ours) else estimate > limit
        parts.append(
            pl.DataFrame(
                {
                    "window_start": windows.starts,
                    "rows": rows,
                    "method": [ours] * windows.count,
                    "estimated": estimate,
                    "lower": placed.get("lower_confidence_boundary", np.nan),
                    "upper": placed.get("upper_confidence_boundary", np.nan),
                    "realized": realized.get(ours, np.nan),
                    "threshold": [limit] * windows.count,
                    "alert": past & (rows >= rules.min_window_rows),
                },
                schema=TASK_ESTIMATE_SCHEMA,
            )
        )
    return pl.concat(parts).with_columns(pl.col(pl.Float64).fill_nan(None))


def _cbpe_multiclass(ref: pd.DataFrame, cur: pd.DataFrame, probabilities: dict[int, str], label: str):
    """NannyML's multiclass CBPE (accuracy and macro F1), fitted on the reference, estimated on the windows.
    Classes are their indices: the labels, the chosen class and the keys of ``probabilities`` (their columns)."""
    import nannyml

    cbpe = nannyml.CBPE(
        y_pred_proba=probabilities,
        y_pred=CHOSEN,
        y_true=label,
        timestamp_column_name=WINDOW,
        metrics=list(ESTIMATED["multiclass"].values()),
        chunk_period="h",
        problem_type="classification_multiclass",
    )
    return cbpe.fit(ref).estimate(cur)


def _dle(ref: pd.DataFrame, cur: pd.DataFrame, names: list[str], label: str):
    """NannyML's DLE (RMSE and MAE) of a regression model: an error model fitted on the reference's inputs
    (``names``) and predictions, estimated on the windows."""
    import nannyml

    # LightGBM's defaults, as NannyML's own, without its progress lines on the job's output.
    dle = nannyml.DLE(
        feature_column_names=names,
        y_pred=SCORE,
        y_true=label,
        timestamp_column_name=WINDOW,
        chunk_period="h",
        metrics=list(ESTIMATED["regression"].values()),
        hyperparameters={"verbose": -1},
    )
    with nannyml_strings():
        return dle.fit(ref).estimate(cur)


@contextlib.contextmanager
def nannyml_strings():
    """pandas as NannyML 0.13 expects it: DLE encodes a categorical feature by writing a numpy array of
    strings back into its frame, which pandas 3 reads as an Arrow string column that cannot be reshaped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")  # deprecated, still honoured in 3.x
        with pd.option_context("future.infer_string", False):
            yield


def _with_output(frame: pl.DataFrame, task: Task) -> np.ndarray:
    """Rows the model answered (an error row has no output to estimate from)."""
    output = [CHOSEN, *proba_columns(task)] if task.kind == "multiclass" else [SCORE]
    return frame.select(pl.all_horizontal(pl.col(output).is_not_null())).to_series().to_numpy()


def _realized(
    frame: pl.DataFrame, windows: EventWindows, label: str, task: Task, metric: str, rules: MonitoringSection
) -> dict[str, np.ndarray]:
    """The realized value of each estimated metric per window (NaN where no labels arrived)."""
    if label not in frame.columns:
        return {}
    realized = task_performance_by_window(frame, windows, label, task, metric, rules).filter(pl.col("feature") == ALL)
    return {
        m: part.sort("window_start")["value"].fill_null(np.nan).to_numpy() for (m,), part in realized.group_by("method")
    }


def reconstruction_drift(
    reference: pl.DataFrame,
    frame: pl.DataFrame,
    windows: EventWindows,
    event_time: str,
    features: list[Feature],
    rules: MonitoringSection,
) -> pl.DataFrame:
    """NannyML's multivariate drift: the mean PCA reconstruction error of each window's rows, against the error
    the same kind of fit makes on reference rows it never saw (RECONSTRUCTION_SCHEMA).

    A PCA scores the rows it was fitted on better than new ones, and which components it keeps where
    features' variances are alike changes from one fit to the next (fits on different 80 % of one
    50,000-row reference of raw numbers scored fresh clean rows 1.15 to 1.25, the fit on all of it 1.22
    where its held-out folds said 1.18), so neither NannyML's own band (set on
    the fit's reference chunks) nor one fit on the whole reference gives a clean window's level.
    Instead the reference is split into RECONSTRUCTION_FOLDS folds; each fit on the others scores its
    held-out fold, whose rows give the out-of-sample mean and per-row spread, and scores every window;
    a window's error is the average of those fits'. A window alerts when its error passes that mean by
    the larger of ``drift.reconstruction_error`` (relative) and what chance alone exceeds at
    ``drift.false_alarm_rate`` between its rows and the reference's: z·sd·sqrt(1/n + 2/m). A reference
    under RECONSTRUCTION_FOLDS × MIN_FOLD_ROWS rows cannot give a fold a fit and a held-out level worth
    the name: the windows get no error, no threshold and no alert. A window under MIN_MEASURED_ROWS rows gets
    its threshold but no error.
    """
    import nannyml

    names = [f.name for f in features]
    categorical = [f.name for f in features if f.type in ("category", "boolean")]
    continuous = [name for name in names if name not in categorical]
    # Python strings, not Arrow's: NannyML's count encoder walks every categorical value in Python, and
    # walking Arrow strings made the whole calculation 2.4 times slower.
    with nannyml_strings():
        ref = _to_pandas(reference, EventWindows(reference, event_time, windows.every), names, categorical)
        if len(ref) < RECONSTRUCTION_FOLDS * MIN_FOLD_ROWS:
            return _reconstruction_checks(windows, {}, np.nan, np.nan, len(ref), rules)
        measured = _measured(windows)
        cur = _to_pandas(frame, windows, names, categorical, rows=measured) if measured.any() else None
        fold = np.random.default_rng(0).permutation(len(ref)) % RECONSTRUCTION_FOLDS
        held_out, scored = [], []
        for k in range(RECONSTRUCTION_FOLDS):
            train = ref[fold != k]
            calculator = nannyml.DataReconstructionDriftCalculator(
                column_names=names, timestamp_column_name=WINDOW, chunk_period="h"
            ).fit(_one_chunk(_as_shares(train, train, continuous)))
            held_out.append(
                calculator.calculate(_one_chunk(_as_shares(ref[fold == k], train, continuous)))
                .filter(period="analysis")
                .to_df()
            )
            if cur is not None:
                scored.append(
                    _by_window(
                        calculator.calculate(_as_shares(cur, train, continuous)), "reconstruction_error", windows
                    )
                )
    folds = pd.concat(held_out)  # one chunk per fold, in fold order
    rows = np.bincount(fold)
    mean = np.average(folds[("reconstruction_error", "value")], weights=rows)
    variance = folds[("reconstruction_error", "sampling_error")].to_numpy() ** 2 * rows  # a row's, within its fold
    spread = np.sqrt(np.sum((rows - 1) * variance) / np.sum(rows - 1))
    average = (
        {c: np.mean([fit[c] for fit in scored], axis=0) for c in ("value", *RECONSTRUCTION_BAND)} if scored else {}
    )
    return _reconstruction_checks(windows, average, mean, spread, len(ref), rules)


def _reconstruction_checks(
    windows: EventWindows,
    by_window: dict[str, np.ndarray],
    mean: float,
    spread: float,
    reference_rows: int,
    rules: MonitoringSection,
) -> pl.DataFrame:
    """Each window's error, band and threshold: the out-of-sample ``mean`` plus the larger of the relative floor
    and the chance bound at the window's rows (the floor for an empty window); NaN where nothing was measured."""
    rows = windows.rows()
    error = by_window.get("value", np.full(windows.count, np.nan))
    z = NormalDist().inv_cdf(1 - rules.drift.false_alarm_rate)  # the one statistic of all features together
    with np.errstate(divide="ignore"):
        chance = z * spread * np.sqrt(1 / rows + 1 / (REFERENCE_ROW_WEIGHT * reference_rows))
    rise = np.where(
        rows > 0, np.fmax(rules.drift.reconstruction_error * mean, chance), rules.drift.reconstruction_error * mean
    )
    threshold = mean + rise
    return pl.DataFrame(
        {
            "window_start": windows.starts,
            "rows": rows,
            "reconstruction_error": error,
            "lower": by_window.get(RECONSTRUCTION_BAND[0], np.nan),
            "upper": by_window.get(RECONSTRUCTION_BAND[1], np.nan),
            "threshold": threshold,
            "alert": (error > threshold) & (rows >= rules.min_window_rows),
        },
        schema=RECONSTRUCTION_SCHEMA,
    ).with_columns(pl.col(pl.Float64).fill_nan(None))


def _as_shares(rows: pd.DataFrame, train: pd.DataFrame, continuous: list[str]) -> pd.DataFrame:
    """Each number as the share of a fit's training rows at or below it (missing stays missing).

    PCA's error on raw skewed numbers is a mean dominated by a few far rows, whose level a reference of
    hundreds of rows cannot pin down (a log-normal feature put clean windows past the bound up to 16 % of
    the time); on the shares it is bounded, and a window's mean error is near normal from 200 rows. Each
    fit has its own scale, from its own rows, so its held-out fold is as new to it as a window is.
    """
    shares = {}
    for name in continuous:
        cdf = drift.empirical_cdf(train[name].to_numpy(dtype=np.float64, na_value=np.nan))
        values = rows[name].to_numpy(dtype=np.float64, na_value=np.nan)
        share = np.concatenate(([0.0], cdf.cdf))[np.searchsorted(cdf.values, values, side="right")]
        shares[name] = np.where(np.isnan(values), np.nan, share)
    return rows.assign(**shares)


def _one_chunk(rows: pd.DataFrame) -> pd.DataFrame:
    """Reference rows as one NannyML chunk: a fit's own chunks are not used, a held-out fold is judged whole."""
    return rows.assign(**{WINDOW: pd.Timestamp(0)})


def _measured(windows: EventWindows, rows: np.ndarray | None = None) -> np.ndarray:
    """The rows (among ``rows``, a mask, when given) of the windows holding at least MIN_MEASURED_ROWS of them:
    those NannyML is handed. Its chunker groups a frame by period, and pandas 3 loses the group of a one-row
    frame; a one-row window measured only when a run recomputes it beside others would change with the run.
    So a smaller window is reported with its rows but measures nothing, and alerts on nothing."""
    inside = windows.code >= 0
    if rows is not None:
        inside &= rows
    held = np.bincount(windows.code[inside], minlength=windows.count)
    return inside & np.isin(windows.code, np.flatnonzero(held >= MIN_MEASURED_ROWS))


def _to_pandas(
    frame: pl.DataFrame,
    windows: EventWindows,
    columns: list[str],
    categorical: list[str] = (),
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """The rows inside a window (and among ``rows``, a mask, when given), with their window start as a
    naive UTC timestamp."""
    starts = windows.starts.dt.replace_time_zone(None)
    inside = windows.code >= 0
    if rows is not None:
        inside &= rows
    selected = (
        frame.select(columns)
        .filter(pl.Series(inside))
        .with_columns(
            starts.gather(windows.code[inside]).alias(WINDOW), *(pl.col(c).cast(pl.String) for c in categorical)
        )
    )
    out = selected.to_pandas()
    for c in categorical:  # pandas 3 strings are not what NannyML recognises as categorical
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
