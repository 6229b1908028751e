"""How often the default accuracy rules fire on a healthy model, and how often on a degraded one.

Simulates windows of labelled traffic from a binormal model (negatives' scores N(0, 1), positives'
N(d, 1), AUC = Φ(d/√2)) and judges each window's realized AUC the way the alert rules do: against
the version's reference AUC, itself measured on a held-out evaluation set of ``--eval-rows`` rows (so
it carries its own noise, as a real version's does). A healthy window has the reference's true AUC; a
degraded one has it minus ``--drop``. Compared: the default rules (``DEFAULT_ALERTS``: margins of
max(0.05, 3 SE) and max(0.10, 4 SE)), fixed margins of 0.05 and 0.10 alone, and the old absolute
thresholds 0.85 / 0.80. Run from the repository root:

    .venv/bin/python scripts/bench/alert_noise.py [--trials 20000] [--seed 7]     # about a minute
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from scipy.stats import norm

from appliance.spec.alerts import DEFAULT_ALERTS, AlertRule, auc_standard_error

REFERENCE_AUCS = (0.71, 0.80, 0.90)
POSITIVE_RATES = (0.027, 0.10, 0.50)  # 0.027: the bundled sample's fraud rate
WINDOW_ROWS = (200, 1000, 3000)  # 200: the accuracy rules' min_rows; ~3,000: a sample day
BATCH = 1000


def window_aucs(rng: np.random.Generator, auc: float, positive_rate: float, rows: int, trials: int) -> np.ndarray:
    """Realized AUCs of ``trials`` windows of ``rows`` labelled rows (NaN where a window has one class)."""
    d = np.sqrt(2) * norm.ppf(auc)
    out = []
    for start in range(0, trials, BATCH):
        n = min(BATCH, trials - start)
        labels = rng.random((n, rows)) < positive_rate
        scores = rng.standard_normal((n, rows)) + d * labels
        ranks = np.empty((n, rows))
        np.put_along_axis(ranks, scores.argsort(axis=1), np.arange(1.0, rows + 1), axis=1)  # no ties
        positives = labels.sum(axis=1)
        negatives = rows - positives
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(((ranks * labels).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives))
    return np.concatenate(out)


def reference_aucs(
    rng: np.random.Generator, auc: float, positive_rate: float, eval_rows: int, trials: int
) -> np.ndarray:
    """A version's measured reference AUC, one per trial: the true AUC plus its evaluation set's noise."""
    positives = eval_rows * positive_rate
    return auc + auc_standard_error(auc, positives, eval_rows - positives) * rng.standard_normal(trials)


def fire_rates(rule, realized: np.ndarray, references: np.ndarray, positive_rate: float, rows: int) -> float:
    """Share of the judged windows (both classes present) where ``rule`` fires."""
    judged = ~np.isnan(realized)
    bounds = np.array([r - rule.margin(r, positive_rate, rows) for r in references])
    return float(np.mean(realized[judged] < bounds[judged])) if judged.any() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--eval-rows", type=int, default=30_000, help="the reference's held-out rows (sample: ~30k)")
    parser.add_argument("--drop", type=float, default=0.15, help="AUC lost by a degraded model")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    warn, crit = (next(r for r in DEFAULT_ALERTS if r.name == n) for n in ("accuracy-low", "accuracy-critical"))
    fixed_warn = AlertRule("fixed-0.05", "performance", "auc", "<", 0.05, relative_to="reference")
    fixed_crit = AlertRule("fixed-0.10", "performance", "auc", "<", 0.10, relative_to="reference")
    print(
        f"{args.trials:,} windows per line; reference measured on {args.eval_rows:,} held-out rows; "
        f"% of judged windows that fire"
    )
    print(
        f"{'ref AUC':>7} {'pos rate':>8} {'rows':>5} {'E[pos]':>6} | healthy: {'warn':>6} {'retrain':>7} "
        f"{'fix.05':>6} {'fix.10':>6} {'<0.85':>6} {'<0.80':>6} | AUC −{args.drop:g}: {'warn':>6} {'retrain':>7} "
        f"| warn/retrain margin"
    )
    worst = {"warn": 0.0, "retrain": 0.0}
    for auc in REFERENCE_AUCS:
        for rate in POSITIVE_RATES:
            for rows in WINDOW_ROWS:
                refs = reference_aucs(rng, auc, rate, args.eval_rows, args.trials)
                healthy = window_aucs(rng, auc, rate, rows, args.trials)
                degraded = window_aucs(rng, auc - args.drop, rate, rows, args.trials)
                judged = healthy[~np.isnan(healthy)]
                h = [fire_rates(r, healthy, refs, rate, rows) for r in (warn, crit, fixed_warn, fixed_crit)]
                d = [fire_rates(r, degraded, refs, rate, rows) for r in (warn, crit)]
                worst = {"warn": max(worst["warn"], h[0]), "retrain": max(worst["retrain"], h[1])}
                margins = (warn.margin(auc, rate, rows), crit.margin(auc, rate, rows))
                absolute = (np.mean(judged < 0.85), np.mean(judged < 0.80))
                print(
                    f"{auc:7.2f} {rate:8.3f} {rows:5d} {rows * rate:6.1f} | healthy: {100 * h[0]:5.2f}% "
                    f"{100 * h[1]:6.2f}% {100 * h[2]:5.1f}% {100 * h[3]:5.1f}% {100 * absolute[0]:5.1f}% "
                    f"{100 * absolute[1]:5.1f}% | AUC −{args.drop:g}: {100 * d[0]:5.1f}% {100 * d[1]:6.1f}% "
                    f"| {margins[0]:.3f} / {margins[1]:.3f}"
                )
    print(
        f"worst healthy false-alarm rate of the defaults: warning {100 * worst['warn']:.2f} %, "
        f"retrain {100 * worst['retrain']:.2f} % of judged windows"
    )


if __name__ == "__main__":
    main()
