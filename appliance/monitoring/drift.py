"""Drift statistics between a reference sample and many windows at once, vectorised with numpy.

Every function takes the reference once and all windows' rows together, and returns one value
per window (NaN for a window with no rows). Categorical counts take an integer window code per
row (0 .. n_windows-1); continuous statistics take the rows grouped by window and sorted within
each (SortedWindows), sorted once per feature and read by both KS and the PSI bin counts. One
pass over all windows replaces a Python loop over windows: that is what makes the statistics of a
month of daily windows over half a million rows take about a tenth of a second (their chance bounds,
a few thousand simulated windows per window and feature, take about 0.2 s more on two cores:
scripts/bench/drift.py).

Effect sizes, judged against chance: two samples of one distribution still differ, by an amount
that shrinks as 1/n + 1/m (window rows n, reference rows m), so a fixed threshold is noise on a
200-row window and a triviality on a 100k-row one. ``ks_by_chance`` and ``by_chance`` give, per
window, the value chance alone exceeds at a stated rate; a window alerts past the larger of that
and the spec's effect-size floor (``feature_drift``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

# A bin the reference or a window leaves empty gets this share instead of 0, so that PSI's
# ln(p / q) stays finite. 1e-4 is "one row in ten thousand": far below any real bin at the
# default 10 bins, and it caps one empty bin's contribution at (q - 1e-4) * ln(q / 1e-4),
# e.g. 0.85 for q = 0.1 — a clear alert, as a bin that emptied should be.
PSI_EMPTY_BIN_SHARE = 1e-4


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles; repeated edges (ties, discrete data) merge."""
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def bin_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: bin k holds [edges[k-1], edges[k]); NaN gets -1."""
    codes = np.searchsorted(edges, values, side="right")
    return np.where(np.isnan(values), -1, codes)


def counts_by_window(codes: np.ndarray, window: np.ndarray, n_windows: int, n_codes: int) -> np.ndarray:
    """A (n_windows, n_codes) table of how many rows of each window fall in each code (-1 skipped)."""
    skipped = n_windows * n_codes  # one extra cell for rows without a code or a window, cut off below
    flat = np.where((codes >= 0) & (window >= 0), window.astype(np.int64) * n_codes + codes, skipped)
    return np.bincount(flat, minlength=skipped + 1)[:-1].reshape(n_windows, n_codes)


def psi(reference_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Population stability index of each window's row of ``counts`` against the reference counts.

    PSI = sum_k (p_k - q_k) ln(p_k / q_k), p the window's shares, q the reference's, each share
    at least PSI_EMPTY_BIN_SHARE.
    """
    q = _shares(np.asarray(reference_counts, dtype=np.float64)[None, :])
    p = _shares(np.atleast_2d(np.asarray(counts, dtype=np.float64)))
    q, p = np.maximum(q, PSI_EMPTY_BIN_SHARE), np.maximum(p, PSI_EMPTY_BIN_SHARE)
    return _nan_if_empty(np.sum((p - q) * np.log(p / q), axis=1), counts)


def jensen_shannon(reference_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, so 0..1) of each window's distribution and the reference's."""
    q = _shares(np.asarray(reference_counts, dtype=np.float64)[None, :])
    p = _shares(np.atleast_2d(np.asarray(counts, dtype=np.float64)))
    m = (p + q) / 2
    divergence = (_relative_entropy(p, m) + _relative_entropy(q, m)) / (2 * np.log(2))
    return _nan_if_empty(np.sqrt(np.maximum(divergence, 0.0)), counts)


def chi2(reference_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson's chi² of the 2×k table (reference, window) × category, per window (no continuity correction)."""
    ref = np.asarray(reference_counts, dtype=np.float64)[None, :]
    cur = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    ref = np.broadcast_to(ref, cur.shape)
    column = ref + cur
    total = column.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_ref = column * ref.sum(axis=1, keepdims=True) / total
        expected_cur = column * cur.sum(axis=1, keepdims=True) / total
        terms = np.where(
            column > 0, (ref - expected_ref) ** 2 / expected_ref + (cur - expected_cur) ** 2 / expected_cur, 0.0
        )
    return _nan_if_empty(terms.sum(axis=1), counts)


def cramers_v(reference_counts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cramér's V of the 2×k table: sqrt(chi² / n), the effect size behind chi² (0..1)."""
    cur = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    n = cur.sum(axis=1) + np.asarray(reference_counts, dtype=np.float64).sum()
    return np.sqrt(chi2(reference_counts, counts) / n)


class EmpiricalCdf(NamedTuple):
    """A reference sample as its distinct values and the share of it at or below each."""

    values: np.ndarray
    cdf: np.ndarray


def empirical_cdf(reference: np.ndarray) -> EmpiricalCdf:
    """The reference's empirical CDF, NaN dropped."""
    values = np.sort(reference[~np.isnan(reference)])
    last = _run_ends(values, np.array([0, values.size]))
    return EmpiricalCdf(values[last], (np.flatnonzero(last) + 1) / max(values.size, 1))


class WindowOrder(NamedTuple):
    """The rows that fall in a window, grouped by window; window w's rows are rows[bounds[w]:bounds[w + 1]]."""

    rows: np.ndarray
    bounds: np.ndarray


def window_order(window: np.ndarray, n_windows: int) -> WindowOrder:
    """Group the rows by window code (rows coded -1 belong to none), keeping their order within a window."""
    inside = np.flatnonzero(window >= 0)
    codes = window[inside]
    # A stable sort on small integers is a radix sort: one pass, shared by every feature.
    by_window = np.argsort(codes.astype(np.int16 if n_windows < 2**15 else np.int64), kind="stable")
    return WindowOrder(inside[by_window], np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=n_windows)))))


class SortedWindows(NamedTuple):
    """Each window's values without NaN, sorted, back to back: window w is values[bounds[w]:bounds[w + 1]]."""

    values: np.ndarray
    bounds: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, order: WindowOrder) -> SortedWindows:
        """Sort each window's values once; KS and the PSI bin counts both read them."""
        grouped = values[order.rows]
        bounds = order.bounds
        missing = np.isnan(grouped)
        if missing.any():
            bounds = bounds - np.concatenate(([0], np.cumsum(missing)))[bounds]
            grouped = grouped[~missing]
        for start, end in pairwise(bounds):
            grouped[start:end].sort()  # in place: ``grouped`` is already a copy
        return cls(grouped, bounds)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)


def bin_counts(windows: SortedWindows, edges: np.ndarray) -> np.ndarray:
    """A (n_windows, edges + 1) table of each window's values per bin; bin k holds [edges[k-1], edges[k])."""
    below = np.empty((windows.sizes.size, edges.size + 2), dtype=np.int64)
    below[:, 0], below[:, -1] = 0, windows.sizes
    for w, (start, end) in enumerate(zip(windows.bounds[:-1], windows.bounds[1:])):
        below[w, 1:-1] = np.searchsorted(windows.values[start:end], edges, side="left")
    return np.diff(below, axis=1)


def ks(reference: np.ndarray | EmpiricalCdf, windows: SortedWindows) -> np.ndarray:
    """Exact two-sample Kolmogorov–Smirnov statistic of each window against the reference.

    D = sup_x |F_ref(x) - F_win(x)|, ties included, NaN dropped. F_win is constant between a
    window's distinct values while F_ref only rises, so the supremum is reached at one of them:
    at it (F_ref(x) against F_win(x)) or just before it (F_ref(x-) against F_win(x-)). With each
    window sorted, a run of equal values gives F_win(x-) at its start and F_win(x) at its end,
    and one vectorised pass over all runs finds every window's D.
    """
    ref = reference if isinstance(reference, EmpiricalCdf) else empirical_cdf(reference)
    sizes = windows.sizes
    out = np.full(sizes.size, np.nan)
    if ref.values.size == 0 or windows.values.size == 0:
        return out
    run_end = np.flatnonzero(_run_ends(windows.values, windows.bounds))
    run_start = np.concatenate(([0], run_end[:-1] + 1))
    value = windows.values[run_end]
    first_run = np.searchsorted(run_end, windows.bounds)  # window w's runs: first_run[w] .. first_run[w + 1] - 1
    window = np.repeat(np.arange(sizes.size), np.diff(first_run))
    offset, n = windows.bounds[window], sizes[window]
    at_or_below = np.searchsorted(ref.values, value, side="right")  # reference's distinct values <= x
    below = at_or_below - ((at_or_below > 0) & (ref.values[at_or_below - 1] == value))
    cdf = np.concatenate(([0.0], ref.cdf))  # cdf[j]: share of the reference at or below its j-th distinct value
    gap = np.maximum(
        np.abs(cdf[at_or_below] - (run_end + 1 - offset) / n), np.abs(cdf[below] - (run_start - offset) / n)
    )
    filled = sizes > 0
    out[filled] = np.maximum.reduceat(gap, first_run[:-1][filled])
    return out


# A chance bound by simulation is the j-th largest of D simulated values. With j = alpha·(D + 1) a window
# past it would be a Monte Carlo test of level alpha averaged over seeds (Barnard 1963); with one fixed
# seed the bound's own luck is shared by every window, and how many of the D values pass the true
# quantile is about Poisson(alpha·D). Taking j = alpha·D - 1.28·sqrt(alpha·D) keeps the bound at or above
# the true quantile for 9 seeds in 10: the rate a window alerts at is then alpha or less, whatever the
# seed did. D puts about ten values past the quantile on average (D = 1,999 and j = 6 at alpha 0.5 %); the
# cap bounds the work where a rate is split many ways (a multiclass model's prediction).
NULL_EXCEEDANCES = 10
MAX_NULL_DRAWS = 10_000


def ks_by_chance(window_rows: np.ndarray, reference_rows: int, alpha: float) -> np.ndarray:
    """The KS distance two samples of one continuous distribution, of these sizes, exceed with probability alpha.

    Kolmogorov's limit: P(D > x·sqrt(1/n + 1/m)) = 2 Σ_j (-1)^(j-1) exp(-2 j² x²), whose first term is
    all that counts at alpha ≤ 0.05 (the second is below alpha⁴/8). Finite samples fall a little under
    the limit, and ties (integer codes, flags) only make D smaller, so the bound errs on the safe side.
    """
    n = np.asarray(window_rows, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.sqrt(np.log(2 / alpha) / 2) * np.sqrt(1 / n + 1 / reference_rows)


def by_chance(
    statistics: Sequence[Callable[[np.ndarray, np.ndarray], np.ndarray]],
    reference_counts: np.ndarray,
    window_rows: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """Per statistic and window, the value ``statistic(reference_counts, counts)`` exceeds with probability at
    most alpha when the window's rows come from the distribution the reference was drawn from: a
    (len(statistics), windows) array, NaN for an empty window.

    That distribution is known only through the reference, so each simulated window first draws the bins'
    shares given the reference's counts (Dirichlet: each bin its count plus half a row; a bin the
    reference left empty, such as unseen categories, as many rows as the categories it saw once,
    Good–Turing's estimate of the mass it has not seen, and none if it saw none once), then its rows from
    those shares (multinomial), at the window's own size: the statistics are discrete, and a count that
    sits under the bound at one size passes it at the next. The share draw carries the reference's own
    sampling noise, so the bound shrinks as 1/n + 1/m does; sparse categories, skewed bins and PSI's
    empty-bin floor are in the simulated windows as they are in real ones, where the chi² approximation
    (PSI ≈ χ²(k-1)·(1/n + 1/m)) passes its stated rate several times over. The statistics share one
    simulation; a fixed seed makes the bound a function of its inputs.
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    rows = np.asarray(window_rows, dtype=np.int64)
    out = np.full((len(statistics), rows.size), np.nan)
    draws = min(MAX_NULL_DRAWS, math.ceil(NULL_EXCEEDANCES / alpha) - 1)
    expected = alpha * draws  # simulated values past the true quantile, on average
    rank = math.floor(expected - 1.28 * math.sqrt(expected))  # the bound: the rank-th largest (see above)
    if not statistics or reference.sum() == 0 or not (rows > 0).any():
        return out
    if rank < 1:
        out[:, rows > 0] = np.inf  # too small a rate to tell from chance with MAX_NULL_DRAWS
        return out
    rng = np.random.default_rng(0)
    prior = np.where(reference > 0, reference + 0.5, np.sum(reference == 1))
    shares = np.zeros((draws, reference.size))
    shares[:, prior > 0] = rng.dirichlet(prior[prior > 0], size=draws)
    for size in np.unique(rows[rows > 0]):
        counts = rng.multinomial(size, shares)
        for i, statistic in enumerate(statistics):
            out[i, rows == size] = np.partition(statistic(reference, counts), draws - rank)[draws - rank]
    return out


def _run_ends(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Whether each value of sorted segments is the last of its run of equal values in its segment."""
    last = np.ones(values.size, dtype=bool)
    last[:-1] = values[1:] != values[:-1]
    last[bounds[1:][bounds[1:] > bounds[:-1]] - 1] = True
    return last


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _relative_entropy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=1)


def _nan_if_empty(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.where(np.atleast_2d(counts).sum(axis=1) > 0, values, np.nan)
