"""Drift statistics between a reference sample and many windows at once, vectorised with numpy.

Every function takes the reference once and the current rows with an integer window code per
row (0 .. n_windows-1), and returns one value per window (NaN for a window with no rows). One
pass over all windows replaces a Python loop over windows: that is what makes a month of daily
windows over half a million rows take well under a second.

Effect sizes, not p-values: on a window of thousands of rows every p-value is tiny for a shift
nobody cares about, so alerts compare these statistics with thresholds from the spec.
"""

from __future__ import annotations

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
    keep = codes >= 0
    flat = window[keep].astype(np.int64) * n_codes + codes[keep]
    return np.bincount(flat, minlength=n_windows * n_codes).reshape(n_windows, n_codes)


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
        terms = np.where(column > 0, (ref - expected_ref) ** 2 / expected_ref
                         + (cur - expected_cur) ** 2 / expected_cur, 0.0)
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
    values, counts = np.unique(reference[~np.isnan(reference)], return_counts=True)
    return EmpiricalCdf(values, np.cumsum(counts) / max(counts.sum(), 1))


def ks(reference: np.ndarray | EmpiricalCdf, values: np.ndarray, window: np.ndarray, n_windows: int) -> np.ndarray:
    """Exact two-sample Kolmogorov–Smirnov statistic of each window against the reference.

    D = sup_x |F_ref(x) - F_win(x)|, ties included, NaN rows dropped. The reference's k distinct
    values cut the line into 2k+1 slots: each value itself and the open gaps around them. F_ref
    is constant on a slot; F_win is constant between the slots a window's rows fall in. So the
    supremum is reached at a slot holding rows (after them) or at the slot just before one
    (before them), and one pass over the rows sorted by (window, slot) finds every window's D.
    """
    ref = reference if isinstance(reference, EmpiricalCdf) else empirical_cdf(reference)
    keep = ~np.isnan(values)
    values, window = values[keep], window[keep]
    out = np.full(n_windows, np.nan)
    k = ref.values.size
    if k == 0 or values.size == 0:
        return out
    # Sorting the rows lets each reference value be looked up among them (k binary searches)
    # instead of each row among the reference values (n cache-hostile ones).
    order = np.argsort(values)
    values = values[order]
    starts = np.searchsorted(values, ref.values, side="left")
    at_or_below = np.repeat(np.arange(k + 1), np.diff(starts, prepend=0, append=values.size))
    equal = (at_or_below > 0) & (ref.values[np.maximum(at_or_below - 1, 0)] == values)
    slot = 2 * at_or_below - equal            # 2 * (reference values < row) + (row is a reference value)
    slot_cdf = np.concatenate(([0.0], np.repeat(ref.cdf, 2)))   # gap 0, then (value j, gap j) pairs
    # A stable sort on small integers is a radix sort: rows end up by window, then by slot.
    codes = window[order].astype(np.int16 if n_windows < 2**15 else np.int64)
    by_window = np.argsort(codes, kind="stable")
    slot, ws = slot[by_window], codes[by_window].astype(np.int64)
    sizes = np.bincount(ws, minlength=n_windows)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    last = np.ones(slot.size, dtype=bool)
    last[:-1] = (ws[1:] != ws[:-1]) | (slot[1:] != slot[:-1])
    run_end = np.flatnonzero(last)
    run_start = np.concatenate(([0], run_end[:-1] + 1))
    run_window, run_slot = ws[run_end], slot[run_end]
    n = sizes[run_window]
    after = np.abs(slot_cdf[run_slot] - (run_end + 1 - offsets[run_window]) / n)
    before = np.abs(slot_cdf[np.maximum(run_slot - 1, 0)] - (run_start - offsets[run_window]) / n)
    gap = np.maximum(after, np.where(run_slot > 0, before, 0.0))
    first = np.flatnonzero(np.diff(run_window, prepend=-1) != 0)
    out[run_window[first]] = np.maximum.reduceat(gap, first)
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _relative_entropy(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=1)


def _nan_if_empty(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.where(np.atleast_2d(counts).sum(axis=1) > 0, values, np.nan)
