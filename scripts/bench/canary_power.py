"""How often canary analysis is wrong: simulated canaries with known truth, judged by the appliance's own rules.

Each trial runs a canary as the appliance does (appliance.deployment.canary): at each step below 100 % the
candidate takes that share of the traffic, the step is judged once both arms have ``min_sample`` new
predictions, on everything each arm answered since the canary began. Production and candidate answer from
the same score distribution; latency is heavy-tailed (log-normal around 8 ms, and 3 % of requests stalled by
a Pareto factor, as garbage collection and a busy machine do); requests fail at a base rate.

Printed:
1. an identical candidate: how often it survives the whole canary (goal ≥ 95 % at 0-2 % base error rates);
2. a worse candidate (2× latency; 3 more points of errors): how often it has been rolled back by the time it
   has answered 200, 400, … 1,000 predictions (goal ≥ 90 % by 1,000).
Two policies: the default steps [5, 25, 50, 100] (the candidate has 600 predictions when it is promoted), and
[5, 10, 25, 50, 75, 100] (1,000).

    .venv/bin/python scripts/bench/canary_power.py [--trials 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.deployment.canary import ArmSample, judge_canary
from appliance.deployment.deployments import MAX_SAMPLE
from appliance.spec import DeploymentSection

POLICIES = {"default [5, 25, 50, 100]": [5, 25, 50, 100], "longer [5, 10, 25, 50, 75, 100]": [5, 10, 25, 50, 75, 100]}


class Arm:
    """One arm's predictions so far, drawn in steps."""

    def __init__(self, rng: np.random.Generator, error_rate: float, latency_factor: float):
        self.rng, self.error_rate, self.latency_factor = rng, error_rate, latency_factor
        self.scores: list[np.ndarray] = []
        self.latencies: list[np.ndarray] = []
        self.failed: list[np.ndarray] = []

    def serve(self, n: int) -> None:
        rng = self.rng
        latency = rng.lognormal(np.log(8.0), 0.6, n)
        stalled = rng.random(n) < 0.03
        latency[stalled] *= 1 + rng.pareto(1.5, stalled.sum())
        failed = rng.random(n) < self.error_rate
        self.scores.append(rng.beta(2, 8, n)[~failed])
        self.latencies.append(latency * self.latency_factor)
        self.failed.append(failed)

    def sample(self) -> ArmSample:
        """The newest MAX_SAMPLE predictions, as the analysis reads them."""
        latencies = np.concatenate(self.latencies)[-MAX_SAMPLE:]
        failed = np.concatenate(self.failed)[-MAX_SAMPLE:]
        scores = np.concatenate(self.scores)[-int((~failed).sum()) :] if (~failed).any() else np.array([])
        return ArmSample(scores.tolist(), latencies.tolist(), int(failed.sum()))


def canary(
    rng: np.random.Generator,
    steps: list[int],
    base_error: float,
    extra_error: float,
    latency_factor: float,
    min_sample: int = 200,
) -> int | None:
    """Run one canary; the candidate's prediction count when it was rolled back, or None if it was promoted."""
    policy = DeploymentSection(canary_steps=steps, min_sample=min_sample)
    production = Arm(rng, base_error, 1.0)
    candidate = Arm(rng, base_error + extra_error, latency_factor)
    served = 0
    for share in steps[:-1]:
        candidate.serve(min_sample)
        production.serve(round(min_sample * (100 - share) / share))
        served += min_sample
        if not judge_canary(production.sample(), candidate.sample(), policy).passed:
            return served
    return None


def simulation_arguments(doc: str) -> tuple[int, np.random.Generator]:
    """A canary bench's ``--trials`` (simulated canaries per row) and the generator its ``--seed`` starts."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return args.trials, np.random.default_rng(args.seed)


def main() -> None:
    trials, rng = simulation_arguments(__doc__)

    print(f"canary analysis, {trials} simulated canaries per row, min_sample 200 per step\n")
    print("1. an identical candidate: survives the whole canary (goal ≥ 95 %)")
    print(f"   {'policy':<34} {'base error rate':>16} {'survived':>9}")
    for name, steps in POLICIES.items():
        for base in (0.0, 0.005, 0.01, 0.02):
            survived = sum(canary(rng, steps, base, 0.0, 1.0) is None for _ in range(trials)) / trials
            print(f"   {name:<34} {base:>16.1%} {survived:>9.1%}")

    print("\n2. a worse candidate: rolled back by the time it has answered N predictions (goal ≥ 90 % by 1,000)")
    cases = [
        ("2× latency, 1 % errors", 0.01, 0.0, 2.0),
        ("+3 points, base 0 %", 0.0, 0.03, 1.0),
        ("+3 points, base 1 %", 0.01, 0.03, 1.0),
        ("+3 points, base 2 %", 0.02, 0.03, 1.0),
    ]
    for name, steps in POLICIES.items():
        looks = [200 * (i + 1) for i in range(len(steps) - 1)]
        print(f"   {name}")
        print(f"   {'candidate':<26}" + "".join(f"{f'by {n:,}':>10}" for n in looks))
        for label, base, extra, factor in cases:
            ends = [canary(rng, steps, base, extra, factor) for _ in range(trials)]
            shares = [sum(e is not None and e <= n for e in ends) / trials for n in looks]
            print(f"   {label:<26}" + "".join(f"{s:>10.1%}" for s in shares))


if __name__ == "__main__":
    main()
