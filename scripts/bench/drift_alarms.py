"""Drift alarms on the bundled sample: ours (spec defaults) against NannyML's defaults, plus CBPE.

Reference: the model's held-out evaluation window, 2026-10-06 .. 10-15. Windows: every day of
the history before it (2026-09-01 .. 10-05, clean by construction) and of live.parquet
(2026-10-16 .. 10-30; clean until 10-19, drift from 10-20). A feature-day on a clean day that
alerts is a false alarm. Run from the repository root:

    .venv/bin/python scripts/bench/drift_alarms.py
"""

from __future__ import annotations

import sys
import time
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import polars as pl

from appliance.config import bundled_spec_path
from appliance.features.encoding import FeatureSchema
from appliance.monitoring.estimation import estimate_auc, reconstruction_drift
from appliance.monitoring.feature_drift import ReferenceProfile, feature_drift
from appliance.monitoring.prediction_drift import prediction_drift_by_window
from appliance.monitoring.windows import EventWindows
from appliance.spec import load_spec
from appliance.spec.monitoring import MonitoringSection
from appliance.training.lightgbm_trainer import native_predict, train_lightgbm

DRIFT_START = date(2026, 10, 20)
CATEGORICAL = ("merchant_category", "is_foreign", "country")
REFERENCE = (datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 16, tzinfo=UTC))


def raw_features(spec):
    """The columns the sample's transactions and users carry (the feature store's inputs)."""
    return [*spec.features.request, *spec.features.entity_attributes]


def main() -> None:
    spec = load_spec(bundled_spec_path())
    features = raw_features(spec)
    users = spec.resolve(spec.data.entities)
    history = pl.read_parquet(spec.resolve(spec.data.source)).join(pl.read_parquet(users), on="user_id")
    live = pl.read_parquet(spec.resolve(spec.data.live)).join(pl.read_parquet(users), on="user_id")
    train = history.filter(pl.col("event_time") < REFERENCE[0])
    reference = history.filter(pl.col("event_time") >= REFERENCE[0])
    traffic = pl.concat([train, live])
    rules = MonitoringSection()

    started = time.perf_counter()
    windows = EventWindows(traffic, "event_time", rules.window)
    ours = feature_drift(ReferenceProfile.fit(reference, features, rules.psi_bins), traffic, windows, rules)
    ours_s = time.perf_counter() - started
    ours_days = ours.filter(pl.col("rows") > 0).group_by("window_start", "feature").agg(pl.col("alert").any())

    names = [f.name for f in features]
    started = time.perf_counter()
    nml_default = nannyml_alerts(reference, traffic, names, "jensen_shannon", "jensen_shannon")
    nml_s = time.perf_counter() - started
    nml_ks_chi2 = nannyml_alerts(reference, traffic, names, "kolmogorov_smirnov", "chi2")

    print(
        f"reference {reference.height:,} rows; {ours_days['window_start'].n_unique()} daily windows "
        f"with rows; ours {ours_s:.2f} s, NannyML (defaults) {nml_s:.2f} s\n"
    )
    for name, days in (
        ("ours (spec defaults: PSI + KS / PSI + JS)", ours_days),
        ("NannyML defaults (JS everywhere, reference mean + 3 sd)", nml_default),
        ("NannyML KS (mean + 3 sd) / chi2 (p < 0.05)", nml_ks_chi2),
    ):
        report(name, days)

    print("\nper-day values (ours):")
    wide = (
        ours.with_columns(
            pl.col("window_start").dt.date().alias("day"), (pl.col("feature") + ":" + pl.col("method")).alias("check")
        )
        .filter(pl.col("day") >= date(2026, 10, 16))
        .pivot(on="check", index="day", values="value")
        .with_columns(pl.exclude("day").round(3))
    )
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=240, tbl_hide_dataframe_shape=True):
        print(wide)

    model_checks(spec, train, reference, live, rules)


def report(name: str, days: pl.DataFrame) -> None:
    days = days.with_columns(pl.col("window_start").dt.date().alias("day"))
    clean = days.filter(pl.col("day") < DRIFT_START)
    clean_live = clean.filter(pl.col("day") >= date(2026, 10, 16))
    false_alarms = clean.filter("alert")
    print(
        f"{name}: false alarms on clean feature-days {false_alarms.height} of {clean.height} "
        f"({false_alarms.height / clean.height:.1%}); on the clean live days 10-16..10-19 "
        f"{clean_live['alert'].sum()} of {clean_live.height}"
    )
    for row in false_alarms.sort("day").iter_rows(named=True):
        print(f"    false alarm {row['day']} {row['feature']}")
    drift_days = days.filter(pl.col("day") >= DRIFT_START)
    flagged = drift_days.filter("alert").group_by("day").len().sort("day")
    print(f"    drift days flagged on some feature: {flagged.height} of {drift_days['day'].n_unique()}")
    first = (
        drift_days.filter("alert")
        .group_by("feature")
        .agg(pl.col("day").min().alias("first"), pl.len().alias("days"))
        .sort("feature")
    )
    for row in first.iter_rows(named=True):
        print(f"    {row['feature']:18s} first flagged {row['first']}, flagged on {row['days']} drift days")


def nannyml_alerts(
    reference: pl.DataFrame, traffic: pl.DataFrame, names: list[str], continuous: str, categorical: str
) -> pl.DataFrame:
    """NannyML's UnivariateDriftCalculator with its default thresholds, daily chunks; an alert per feature-day."""
    import nannyml

    def frame(f: pl.DataFrame):
        out = f.select(*names, pl.col("event_time").dt.replace_time_zone(None)).to_pandas()
        for c in CATEGORICAL:
            out[c] = out[c].astype(str).astype("category")
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = nannyml.UnivariateDriftCalculator(
            column_names=names,
            timestamp_column_name="event_time",
            treat_as_categorical=list(CATEGORICAL),
            continuous_methods=[continuous],
            categorical_methods=[categorical],
            chunk_period="D",
        ).fit(frame(reference))
        table = calc.calculate(frame(traffic)).filter(period="analysis").to_df()
    starts = (
        pl.Series(table[("chunk", "chunk", "start_date")].to_numpy())
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )
    parts = [
        pl.DataFrame(
            {
                "window_start": starts,
                "feature": name,
                "alert": table[(name, categorical if name in CATEGORICAL else continuous, "alert")]
                .to_numpy()
                .astype(bool),
            }
        )
        for name in names
    ]
    return pl.concat(parts)


def model_checks(
    spec, train: pl.DataFrame, reference: pl.DataFrame, live: pl.DataFrame, rules: MonitoringSection
) -> None:
    schema = FeatureSchema.learn(raw_features(spec), train)
    booster = train_lightgbm(
        schema, schema.encode_frame(train), train["is_fraud"].to_numpy(), dict(spec.training.params), spec.training.seed
    )
    reference = reference.with_columns(score=native_predict(booster, schema.encode_frame(reference)))
    live = live.with_columns(score=native_predict(booster, schema.encode_frame(live)))
    windows = EventWindows(live, "event_time", rules.window)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cbpe = estimate_auc(reference, live, windows, "event_time", "score", "is_fraud", spec.target.threshold, rules)
        cbpe_s = time.perf_counter() - started
        multivariate = reconstruction_drift(reference, live, windows, "event_time", raw_features(spec), rules)
    prediction = prediction_drift_by_window(
        reference["score"].to_numpy(), live, "score", windows, spec.target.threshold, rules
    )
    pred = prediction.pivot(on="method", index="window_start", values="value")
    pred_alert = prediction.group_by("window_start").agg(pl.col("alert").any().alias("prediction_alert"))
    table = (
        cbpe.select(
            "window_start",
            "rows",
            pl.col("estimated").alias("estimated_auc"),
            "lower",
            "upper",
            pl.col("realized").alias("realized_auc"),
        )
        .join(
            multivariate.select(
                "window_start",
                "reconstruction_error",
                pl.col("threshold").alias("re_threshold"),
                pl.col("alert").alias("re_alert"),
            ),
            on="window_start",
        )
        .join(pred, on="window_start")
        .join(pred_alert, on="window_start")
        .with_columns(pl.col("window_start").dt.date().alias("day"))
        .sort("day")
        .drop("window_start")
        .with_columns(pl.col(pl.Float64).round(3))
    )
    print(
        f"\nmodel: LightGBM with the spec's parameters, trained on {train.height:,} rows before "
        f"2026-10-06; CBPE reference = its {reference.height:,} out-of-sample evaluation rows "
        f"(CBPE {cbpe_s:.1f} s)"
    )
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=240, tbl_hide_dataframe_shape=True):
        print(table.select("day", *[c for c in table.columns if c != "day"]))
    errors = (table["estimated_auc"] - table["realized_auc"]).abs()
    print(
        f"|CBPE - realized| mean {errors.mean():.3f}, max {errors.max():.3f}; realized inside the band on "
        f"{int(((table['realized_auc'] >= table['lower']) & (table['realized_auc'] <= table['upper'])).sum())}"
        f" of {table.height} days"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
