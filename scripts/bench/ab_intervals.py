"""How often the A/B report is wrong: its intervals' coverage for one look at small samples, and how often it
names a winner between two identical arms when a team reads it every day.

    .venv/bin/python scripts/bench/ab_intervals.py

Goal: one-look coverage ≥ 95 % from 10 outcomes an arm (binary and heavy-tailed outcomes); a false winner in
at most 5 % of experiments read daily for 60 days (the always-valid interval), where a fixed-n interval read
the same way names one in about a third of them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from appliance.deployment.analysis import _compare

rng = np.random.default_rng(0)
# 1. one-look coverage of ci95 at small n, binary p=0.1 and 0.3; continuous lognormal
for label, draw in [
    ("binary 10%", lambda n: rng.binomial(1, 0.1, n).astype(float)),
    ("binary 30%", lambda n: rng.binomial(1, 0.3, n).astype(float)),
    ("lognormal", lambda n: rng.lognormal(0, 1, n)),
]:
    for n in (10, 30, 100):
        cover, trials = 0, 2000
        for _ in range(trials):
            a, b = list(draw(n)), list(draw(n))
            _, ci, _, _ = _compare(a, b, 2, "higher")
            cover += ci[0] <= 0 <= ci[1]
        print(f"one look {label:12} n={n:4}: coverage {cover / trials:.3f}")
# 2. daily looks, identical arms: share of trials where a winner is ever declared
for p in (0.1, 0.5):
    wins_av, wins_fixed, trials = 0, 0, 500
    for _ in range(trials):
        a, b = [], []
        av = fixed = False
        for _day in range(60):
            a += list(rng.binomial(1, p, 50).astype(float))
            b += list(rng.binomial(1, p, 50).astype(float))
            _, ci, avi, _ = _compare(a, b, 30, "higher")
            av |= avi[0] > 0 or avi[1] < 0
            fixed |= ci[0] > 0 or ci[1] < 0
        wins_av += av
        wins_fixed += fixed
    print(
        f"60 daily looks, identical arms p={p}: always-valid false winner {wins_av / trials:.3f}, "
        f"fixed-n {wins_fixed / trials:.3f}"
    )
