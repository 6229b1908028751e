"""Each window's distribution of every monitored input beside the reference's, in bins a person can read.

What the drift statistics summarise in one number, a chart shows: the monitor job records, per window and
feature, the shares of the reference's rows and of the window's rows in the same bins, and the story
(``monitoring.story.distributions``) reads them back. Bins are chosen on the reference once:

- a number (float, integer) falls in bins at the reference's deciles (repeated edges merge, so 10 bins at
  most and fewer for discrete values), labelled ``< 3``, ``[3, 12.5)``, ``≥ 80``;
- a category or flag is one of the reference's 12 most common values, else ``(other)``;
- a value that is null (or does not read as the declared type) is ``(missing)``.

``(other)`` and ``(missing)`` are kept only where the reference or the window has rows in them. The drift
checks bin differently (PSI on the spec's ``psi_bins``, every category the reference has 10 rows of): those
bins are tuned for a statistic, these for a chart whose bars have to be few and named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise

import numpy as np
import polars as pl

from appliance.monitoring import drift
from appliance.monitoring.feature_drift import CONTINUOUS_TYPES, as_text, category_codes, numbers
from appliance.monitoring.windows import EventWindows
from appliance.spec import Feature

DECILES = 10
TOP_CATEGORIES = 12
OTHER, MISSING = "(other)", "(missing)"
# A window's rows per feature as monitor.py hands them to the store (store.DISTRIBUTION_SCHEMA, less the model,
# version and computed_at the run adds).
WINDOW_DISTRIBUTION_SCHEMA = pl.Schema(
    {
        "window_start": pl.Datetime("us", "UTC"),
        "feature": pl.String(),
        "position": pl.Int64(),
        "kind": pl.String(),
        "labels": pl.String(),
        "reference": pl.String(),
        "current": pl.String(),
        "reference_rows": pl.Int64(),
        "current_rows": pl.Int64(),
    }
)
_SHARE_DIGITS = 6  # a share to a millionth: finer than any bar, and a tenth of the bytes of a full float


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins, fitted on the reference: its labels, and the reference's rows in each. The last
    label is always ``(missing)``; a categorical feature's one before it ``(other)``."""

    name: str
    kind: str  # numeric | categorical
    labels: list[str]
    reference: np.ndarray  # reference rows per label
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: inner edges at the reference's deciles
    categories: list[str] = field(default_factory=list)  # categorical: the reference's most common values

    @classmethod
    def fit(cls, feature: Feature, column: pl.Series) -> FeatureBins:
        if feature.type in CONTINUOUS_TYPES:
            edges = drift.quantile_edges(numbers(column), DECILES)
            unfitted = cls(feature.name, "numeric", [*_edge_labels(edges), MISSING], np.empty(0), edges=edges)
        else:
            counted = as_text(column).alias("value").drop_nulls().value_counts(name="rows")
            # The most common first, ties in the values' order: the same reference always gives the same bins.
            ranked = counted.sort(["rows", "value"], descending=[True, False]).head(TOP_CATEGORIES)
            categories = ranked["value"].to_list()
            unfitted = cls(
                feature.name, "categorical", [*categories, OTHER, MISSING], np.empty(0), categories=categories
            )
        return replace(unfitted, reference=np.bincount(unfitted.codes(column), minlength=len(unfitted.labels)))

    @property
    def named(self) -> int:
        """How many labels are bins or categories: those after them (``(other)``, ``(missing)``) are kept only
        where rows fall in them (a category may itself be called "(other)")."""
        return len(self.labels) - (1 if self.kind == "numeric" else 2)

    def codes(self, column: pl.Series) -> np.ndarray:
        """Each value's label index; a missing value the last."""
        missing = len(self.labels) - 1
        if self.kind == "numeric":
            found = drift.bin_codes(numbers(column), self.edges)
        else:
            found = category_codes(column, self.categories)
        return np.where(found < 0, missing, found)


def fit_bins(reference: pl.DataFrame, features: list[Feature]) -> list[FeatureBins]:
    """Bins of each feature the reference holds, in the features' order."""
    return [FeatureBins.fit(f, reference[f.name]) for f in features if f.name in reference.columns]


def window_distributions(
    bins: list[FeatureBins], frame: pl.DataFrame, windows: EventWindows, starts: list[datetime]
) -> pl.DataFrame:
    """Per window in ``starts`` and feature the frame holds: labels, reference and window shares, as JSON
    lists (WINDOW_DISTRIBUTION_SCHEMA). A feature's position is its place in ``bins``."""
    asked = set(starts)
    wanted = [i for i, start in enumerate(windows.starts.to_list()) if start in asked]
    rows = []
    for position, feature in enumerate(bins):
        if feature.name not in frame.columns:  # a missing column is a quality finding, not a distribution
            continue
        counts = drift.counts_by_window(
            feature.codes(frame[feature.name]), windows.code, windows.count, len(feature.labels)
        )
        reference_rows = int(feature.reference.sum())
        for w in wanted:
            kept = [i for i in range(len(feature.labels)) if i < feature.named or feature.reference[i] or counts[w, i]]
            rows.append(
                (
                    windows.starts[w],
                    feature.name,
                    position,
                    feature.kind,
                    json.dumps([feature.labels[i] for i in kept], ensure_ascii=False),
                    _shares(feature.reference[kept]),
                    _shares(counts[w, kept]),
                    reference_rows,
                    int(counts[w].sum()),
                )
            )
    return pl.DataFrame(rows, schema=WINDOW_DISTRIBUTION_SCHEMA, orient="row")


def _shares(counts: np.ndarray) -> str:
    total = counts.sum()
    shares = counts / total if total else np.zeros(counts.size)
    return json.dumps([round(float(s), _SHARE_DIGITS) for s in shares])


def _edge_labels(edges: np.ndarray) -> list[str]:
    """``< e0``, ``[e0, e1)``, …, ``≥ ek``: bin k holds [edges[k-1], edges[k]) as ``drift.bin_codes`` places it."""
    if edges.size == 0:
        return ["all values"]  # the reference has no numbers: one bin holds whatever a window has
    # Four significant digits unless neighbouring edges need more to read apart (1234.5 and 1234.6).
    for digits in (4, 6, 8):
        text = [f"{e:.{digits}g}" for e in edges]
        if len(set(text)) == edges.size:
            break
    else:
        text = [repr(float(e)) for e in edges]
    return [f"< {text[0]}", *(f"[{a}, {b})" for a, b in pairwise(text)), f"≥ {text[-1]}"]
