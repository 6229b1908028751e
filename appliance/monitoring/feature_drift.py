"""Feature drift: each event-time window of traffic against the reference, per feature and method.

The reference is the model's held-out evaluation window. It is profiled once (empirical CDF,
quantile bin edges, category counts) and every later run compares windows with the profile.
Numbers (float, integer) are continuous: PSI on reference-quantile bins and exact KS. Booleans
and categories are categorical: PSI, Jensen–Shannon distance and chi² (as Cramér's V) over the
reference's categories plus one bin for values the reference never had (or had under
RARE_CATEGORY_ROWS times).

A statistic alerts past the larger of its effect-size floor (``[monitoring.drift]``) and what chance
alone exceeds between a window of its rows and the reference (``drift.ks_by_chance``,
``drift.by_chance``), at ``false_alarm_rate`` shared among the feature's statistics: so a clean
window alerts on a feature at most that often whatever its size, and a 100k-row window still needs a
shift as large as the floor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from appliance.errors import InvalidInput
from appliance.monitoring import drift
from appliance.monitoring.windows import EventWindows, checks, empty_checks
from appliance.spec import Feature
from appliance.spec.monitoring import MonitoringSection

CONTINUOUS_TYPES = ("float", "integer")
# A category the reference has a handful of rows of says little about its share (5 rows: anywhere from 0.3 to
# 2.3 times it, at 95 %; 9 rows: 0.46 to 1.9), so it shares the last bin with the values the reference never
# had: a share the reference does measure, where a window's rows of rare and new values add up.
RARE_CATEGORY_ROWS = 10


@dataclass(frozen=True)
class FeatureProfile:
    name: str
    continuous: bool
    counts: np.ndarray  # reference rows per PSI bin / category (+1 unseen bin)
    cdf: drift.EmpiricalCdf | None = None  # continuous: the reference's distinct values and CDF
    edges: np.ndarray | None = None  # continuous: inner PSI bin edges
    categories: list[str] | None = None  # categorical: the reference's values

    @classmethod
    def of_numbers(cls, name: str, column: pl.Series, bins: int) -> FeatureProfile:
        """A continuous profile: the empirical CDF and the counts in reference-quantile bins."""
        values = numbers(column)
        present = np.sort(values[~np.isnan(values)])
        edges = drift.quantile_edges(present, bins)
        counts = drift.bin_counts(drift.SortedWindows(present, np.array([0, present.size])), edges)[0]
        return cls(name, True, counts, drift.empirical_cdf(present), edges)

    @classmethod
    def of_categories(cls, name: str, column: pl.Series) -> FeatureProfile:
        """A categorical profile: the reference's categories and their counts, plus one bin for the values it
        never had or had fewer than RARE_CATEGORY_ROWS times."""
        # Distinct values first, then as text: casting every row (a boolean's "true"/"false") is the slow part.
        categories = sorted(set(as_text(column.drop_nulls().unique()).drop_nulls().to_list()))
        codes = category_codes(column, categories)
        counts = np.bincount(codes[codes >= 0], minlength=len(categories) + 1)[:-1]
        kept = counts >= RARE_CATEGORY_ROWS
        return cls(
            name,
            False,
            np.append(counts[kept], counts[~kept].sum()),
            categories=[c for c, keep in zip(categories, kept) if keep],
        )

    def codes(self, column: pl.Series) -> np.ndarray:
        """Bin or category code of each value (-1 for null)."""
        if self.continuous:
            return drift.bin_codes(numbers(column), self.edges)
        return category_codes(column, self.categories or [])

    def counts_by_window(self, column: pl.Series, windows: EventWindows) -> np.ndarray:
        """A (windows, bins) table of the column's non-null rows in each window and bin."""
        return drift.counts_by_window(self.codes(column), windows.code, windows.count, self.counts.size)

    @property
    def rows(self) -> int:
        """The reference's non-null rows: the m of the chance bounds."""
        return int(self.counts.sum())


@dataclass(frozen=True)
class ReferenceProfile:
    """What drift checks need from the reference, computed once."""

    features: list[FeatureProfile]
    rows: int

    @classmethod
    def fit(cls, reference: pl.DataFrame, features: list[Feature], bins: int = 10) -> ReferenceProfile:
        """Profile the reference's columns for the given features."""
        missing = [f.name for f in features if f.name not in reference.columns]
        if missing:
            raise InvalidInput(f"the reference lacks feature column(s) {missing}")
        profiles = [
            FeatureProfile.of_numbers(f.name, reference[f.name], bins)
            if f.type in CONTINUOUS_TYPES
            else FeatureProfile.of_categories(f.name, reference[f.name])
            for f in features
        ]
        return cls(profiles, reference.height)


def feature_drift(
    profile: ReferenceProfile, frame: pl.DataFrame, windows: EventWindows, rules: MonitoringSection
) -> pl.DataFrame:
    """Drift of every profiled feature in every window: (window_start, feature, method, value, threshold, rows,
    alert)."""
    present = [f for f in profile.features if f.name in frame.columns]  # a missing column is a quality finding
    order = drift.window_order(windows.code, windows.count)  # grouping rows by window once serves every feature

    def one(feature: FeatureProfile) -> list[pl.DataFrame]:
        column = frame[feature.name]
        if feature.continuous:  # each window sorted once: its PSI bin counts and its KS both read it
            values = drift.SortedWindows.of(numbers(column), order)
            counts = drift.bin_counts(values, feature.edges)
        else:
            counts = feature.counts_by_window(column, windows)
        rows = counts.sum(axis=1)
        methods = rules.continuous_methods if feature.continuous else rules.categorical_methods
        alpha = rules.drift.false_alarm_rate / len(methods)  # the feature's statistics share its rate
        binned = [method for method in methods if method != "ks"]
        chance: dict[str, np.ndarray] = dict(
            zip(binned, drift.by_chance([STATISTICS[m] for m in binned], feature.counts, rows, alpha))
        )
        parts = []
        for method in methods:
            if method == "ks":
                value = drift.ks(feature.cdf, values)
                chance[method] = drift.ks_by_chance(rows, feature.rows, alpha)
            else:
                value = STATISTICS[method](feature.counts, counts)
            parts.append(
                drift_checks(
                    windows,
                    feature.name,
                    method,
                    value,
                    getattr(rules.drift, method),
                    chance[method],
                    rows,
                    rules.min_window_rows,
                )
            )
        return parts

    # numpy's sorts and polars' casts release the GIL: features run side by side on the cores.
    with ThreadPoolExecutor(max_workers=max(1, min(len(present), os.cpu_count() or 1))) as pool:
        parts = [part for feature_parts in pool.map(one, present) for part in feature_parts]
    return pl.concat(parts) if parts else empty_checks()


STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "psi": drift.psi,
    "jensen_shannon": drift.jensen_shannon,
    "chi2": drift.cramers_v,
}


def drift_checks(
    windows: EventWindows,
    feature: str,
    method: str,
    value: np.ndarray,
    floor: float,
    chance: np.ndarray,
    rows: np.ndarray,
    min_rows: int,
) -> pl.DataFrame:
    """Check rows of a drift statistic whose threshold is, per window, the larger of the effect-size ``floor``
    (the spec's) and the value ``chance`` alone exceeds at the window's rows (the floor for an empty window)."""
    value = np.asarray(value, dtype=np.float64)
    threshold = np.where(rows > 0, np.fmax(floor, chance), floor)
    alert = (value > threshold) & ~np.isnan(value) & (rows >= min_rows)
    return checks(windows, feature, method, value, np.nan, rows, min_rows).with_columns(
        threshold=pl.Series(threshold, dtype=pl.Float64), alert=pl.Series(alert, dtype=pl.Boolean)
    )


def numbers(column: pl.Series) -> np.ndarray:
    """A column's values as floats, NaN where null or not a number."""
    return column.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()


def as_text(column: pl.Series) -> pl.Series:
    """A column's values as the categories' text (a boolean as "true"/"false")."""
    if column.dtype == pl.Boolean:
        return column.cast(pl.String).str.to_lowercase()
    return column.cast(pl.String, strict=False)


def category_codes(column: pl.Series, categories: list[str]) -> np.ndarray:
    """Index of each value among the reference's categories; unseen values share the last code."""
    if column.dtype == pl.Boolean:  # two values: skip the round trip through strings
        lookup = np.array([categories.index(v) if v in categories else len(categories) for v in ("false", "true")])
        flags = column.cast(pl.Int8).fill_null(-1).to_numpy()
        return np.where(flags < 0, -1, lookup[np.maximum(flags, 0)]).astype(np.int64)
    text = as_text(column)
    # A non-strict cast to the reference's categories turns unseen values into nulls: code them as unseen,
    # then mark the rows that were null to begin with.
    known = text.cast(pl.Enum(categories), strict=False).to_physical().cast(pl.Int64).fill_null(len(categories))
    return np.where(text.is_null().to_numpy(), -1, known.to_numpy())
