"""How often the like-with-like comparison's interval misses the true difference between two versions.

Two models score the same rows (``appliance.validation.paired``): binary AUC with DeLong's interval, binary F1,
multiclass macro F1 and regression RMSE with the paired bootstrap. Generated rows unlike the sample: a 12 %
positive rate, four unbalanced classes, a skewed target. Two scenarios per metric:

- equal: two equally good models (the same signal, independent noise), so the true difference is exactly 0;
  a miss is a "better" or "worse" verdict that chance alone gave;
- apart: the candidate's signal is weaker; the true difference is the metric on 400,000 rows.

Per cell: the share of trials whose 95 % interval holds the true difference (goal: about 0.95; for
"equal", 1 − coverage is the rate of false verdicts), and the interval's mean width. Run from the
repository root:

    .venv/bin/python scripts/bench/paired_coverage.py [--trials 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from appliance.scoring.metrics import score
from appliance.task import Task
from appliance.validation.paired import paired_difference

BINARY, MULTICLASS, REGRESSION = Task(), Task("multiclass", ("w", "x", "y", "z")), Task("regression", ())
CELLS = [(BINARY, "auc"), (BINARY, "f1"), (MULTICLASS, "macro_f1"), (REGRESSION, "rmse")]
ROWS = (300, 1_000, 3_000)
TRUTH_ROWS = 400_000
SHARES = np.array([0.5, 0.25, 0.15, 0.10])


def draw(task: Task, rows: int, weaker: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, candidate output, production output) for ``rows`` rows; the candidate's signal is ``weaker``
    times production's (1.0: as good, with noise of its own)."""
    if task.kind == "binary":
        y = rng.random(rows) < 0.12
        signal = y * 1.2 + rng.standard_normal(rows)

        def model(strength):
            return 1 / (1 + np.exp(-(strength * signal + rng.standard_normal(rows) * 0.8 - 2.0)))

        return y.astype(np.int64), model(weaker), model(1.0)
    if task.kind == "multiclass":
        y = rng.choice(4, rows, p=SHARES)
        onehot = np.eye(4)[y]

        def model(strength):
            logits = strength * 2.0 * onehot + rng.standard_normal((rows, 4)) * 1.2 + np.log(SHARES)
            p = np.exp(logits)
            return p / p.sum(axis=1, keepdims=True)

        return y, model(weaker), model(1.0)
    y = rng.lognormal(3.0, 0.5, rows)

    def model(strength):
        return y + rng.standard_normal(rows) * 6.0 / strength

    return y, model(weaker), model(1.0)


def truth(task: Task, metric: str, weaker: float, rng: np.random.Generator) -> float:
    if weaker == 1.0:
        return 0.0  # equally good by symmetry
    y, a, b = draw(task, TRUTH_ROWS, weaker, rng)
    return score(task, metric, y, a) - score(task, metric, y, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"{'metric':<20} {'scenario':<8} {'rows':>6} {'interval':<32} {'true diff':>10} {'coverage':>9} "
        f"{'width':>8} {'s':>5}"
    )
    for task, metric in CELLS:
        for scenario, weaker in (("equal", 1.0), ("apart", 0.8)):
            true = truth(task, metric, weaker, rng)
            for rows in ROWS:
                started, held, widths, method = time.perf_counter(), 0, [], ""
                for _ in range(args.trials):
                    y, a, b = draw(task, rows, weaker, rng)
                    d = paired_difference(task, metric, y, a, b)
                    method = d.method
                    held += bool(d.low <= true <= d.high)
                    widths.append(d.high - d.low)
                print(
                    f"{task.kind + ' ' + metric:<20} {scenario:<8} {rows:>6,} {method:<32} {true:>+10.4f} "
                    f"{held / args.trials:>9.3f} {np.nanmean(widths):>8.4f} {time.perf_counter() - started:>5.0f}"
                )


if __name__ == "__main__":
    main()
