"""The spec's ``[[alerts]]`` rules and their evaluation over a frame of monitoring results.

A rule compares one metric of the monitoring results (a ``check`` and a ``method``, optionally one
``feature``) with a threshold. It fires for a target (the feature, or the whole model) when the
metric is past the threshold in the latest ``for_windows`` windows of the frame in a row.

The defaults are the reference architecture's alert table (its accuracy rules made relative to the
model, below), plus a prediction-log overflow rule.
Two of them read metrics derived here rather than stored by the monitor:

- ``drift_score`` (check ``drift``): per window, the worst relative excess of a drift statistic over its
  threshold, ``max(1 - threshold / value)`` over the window's drift rows that alert (feature, prediction
  and reconstruction drift), and 0 when none does. 0.3 means some statistic is at least 1.43× its
  threshold. On the sample's feature drift it is 0 on every clean day and 0.36-0.57 on every drift day.
- the accuracy rules read the realized AUC (``performance``/``auc``, from labels) and fall back to
  CBPE's estimate (``estimated``/``auc``) for windows without labels.

A rule with ``relative_to = "reference"`` judges each window against the version that served it: its
threshold is a margin from that version's reference value of the rule's ``method`` (the metric of its
held-out evaluation, recorded in the registry when it was registered), below it for ``<`` and above it for
``>``. With ``noise_z`` (AUC rules only) the margin is at least that many standard errors of an AUC
measured on the window's rows at the reference's AUC and positive rate (Hanley & McNeil 1982), so a small
window (a day's first labels) must fall further before it fires. A version that records no reference value
of the metric is not judged by relative rules (the engine logs that once); a spec that wants a floor as
well lists an absolute rule beside the relative one.

The default accuracy rules are relative: more than max(0.05, 3 standard errors) below the reference AUC
warns, more than max(0.10, 4 standard errors) below retrains. ``scripts/bench/alert_noise.py`` simulates
a healthy model's windows (reference AUCs 0.71-0.90, positive rates 2.7-50 %, 200-3,000 labelled rows):
they fire on at most 0.72 % (warning) and 0.23 % (retrain) of judged windows, the worst being 200-row
windows of a 2.7 %-positive model (about 5 positives), and on at most 0.14 % / 0.01 % from 1,000 rows up.
Fixed margins of 0.05 / 0.10 fire on up to 32 % / 20 % of those windows. On a 3,000-row day of the
sample (0.90, 2.7 %) the margins are 0.069 / 0.10, and an AUC 0.15 lower fires 99.8 % / 96.7 % of the time.

Those defaults watch a binary model's AUC. A multiclass or regression model is watched on the metric
that judges it (the spec's ``[validation] metric``, else macro F1 or RMSE): ``task_alerts`` swaps the two
default accuracy rules for the task's own, by the same names, with the same actions:

- accuracy, macro F1, weighted F1 (a share of rows, or a mean of per-class shares): 0.05 / 0.10 below the
  reference, and at least 3 / 4 standard errors (``proportion_standard_error``). Accuracy is a binomial
  proportion: its error is sqrt(a(1 - a)/n). Weighted F1 weighs each class's F1 by its share of the rows,
  which gives about the same. Macro F1 averages k per-class F1s each measured on about n·s_c rows, so its
  variance is about a(1 - a)/n · Σ 1/s_c / k² (the binomial for balanced classes, more with rare ones), with
  the class shares s_c of the version's evaluation rows (``share.<class>`` among its metrics). On simulated
  windows (200-3,000 rows, 3-10 classes, shares down to 3 %) the measured spread is 0.86-1.04 times that
  for macro F1 and 0.92-1.00 times the binomial for weighted F1.
- RMSE and MAE (an error in the target's units, ``task.SCALED``): the margin is a share of the reference,
  0.25 (warning) and 0.50 (retrain): an RMSE that doubles fires both. By chance an RMSE of n rows varies
  by about sqrt(1/2n) of itself for normal errors: 0.05 at 200 rows, so even heavy-tailed errors (a
  standard error twice that) sit 2.5 of them under the warning.
- R² 0.05 / 0.10 below the reference, log loss 0.10 / 0.25 above (no noise model: absolute margins).

Realized values fall back to the estimate (CBPE, DLE) of the same metric where one is made: multiclass
accuracy and macro F1, regression RMSE and MAE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import msgspec

from appliance.task import SCALED, higher_is_better

Check = Literal["quality", "drift", "prediction", "performance", "estimated", "serving", "machine", "pipeline"]
MODEL_TARGET = "*"  # the target of a rule about the whole model (rows without a feature, or '*')
DRIFT_SCORE = "drift_score"
PROPORTIONS = ("accuracy", "macro_f1", "weighted_f1")  # metrics with a proportion's noise model (see above)
CLASS_SHARE = "share."  # prefix of a multiclass version's class shares among its metrics


class AlertRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # unique within the spec; shown with every alert
    check: Check  # which monitoring results the metric comes from
    method: str  # the metric within the check: 'auc', 'missing_rate', 'drift_score', …
    op: Literal["<", ">"]  # fires when the metric is below (<) or above (>) the threshold
    threshold: float  # the limit; with relative_to, a margin from the reference
    severity: Literal["warning", "critical"] = "warning"  # logged and shown with the alert
    action: Literal["log", "webhook", "retrain"] = "log"  # besides the log line: POST to url, or start a retrain
    feature: str | None = None  # only this feature's rows (default: every target separately; '*': the model)
    min_rows: int = 0  # windows with fewer rows are not judged (noisy AUCs of a few labels)
    for_windows: int = 1  # consecutive windows past the threshold before it fires
    fallback_check: Check | None = None  # a window without the metric reads this one instead
    fallback_method: str | None = None  # the metric read within fallback_check
    url: str | None = None  # webhook: where the alert is POSTed as JSON
    relative_to: Literal["reference"] | None = None  # threshold: a margin from the version's reference (rmse: a share)
    noise_z: float = 0.0  # relative AUC, accuracy and F1 rules: the margin is at least this many SEs

    def __post_init__(self) -> None:
        if self.for_windows < 1:
            raise ValueError(f"alert '{self.name}': for_windows must be at least 1")
        if self.action == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"alert '{self.name}': a webhook action needs url = 'http://…'")
        if (self.fallback_check is None) != (self.fallback_method is None):
            raise ValueError(f"alert '{self.name}': give both fallback_check and fallback_method, or neither")
        if self.relative_to is not None and not self.threshold >= 0:
            raise ValueError(
                f"alert '{self.name}': a rule relative to the reference takes its threshold as a "
                f"margin, 0 or more (op '<': that much below the reference)"
            )
        if self.noise_z and (
            self.relative_to is None or self.method not in ("auc", *PROPORTIONS) or not self.noise_z > 0
        ):
            raise ValueError(
                f"alert '{self.name}': noise_z (> 0) is for AUC, accuracy, macro_f1 and weighted_f1 "
                "rules relative to the reference"
            )

    def breached(self, value: float, bound: float | None = None) -> bool:
        """Whether ``value`` is past ``bound`` (default: the rule's absolute threshold)."""
        bound = self.threshold if bound is None else bound
        return value < bound if self.op == "<" else value > bound

    def margin(
        self, reference: float, positive_rate: float | None, rows: float, class_shares: Sequence[float] = ()
    ) -> float:
        """A relative rule's margin from a reference value, for a window of ``rows`` judged rows: the threshold
        (a share of the reference for rmse and mae), or ``noise_z`` standard errors of the metric where more.
        AUC's error needs the reference's positive rate; macro F1's is wider with its ``class_shares``."""
        if self.method in SCALED:
            return self.threshold * abs(reference)
        if not self.noise_z:
            return self.threshold
        if self.method != "auc":
            shares = class_shares if self.method == "macro_f1" else ()
            return max(self.threshold, self.noise_z * proportion_standard_error(reference, rows, shares))
        if positive_rate is None:
            return self.threshold
        positives = rows * positive_rate
        return max(self.threshold, self.noise_z * auc_standard_error(reference, positives, rows - positives))


def auc_standard_error(auc: float, positives: float, negatives: float) -> float:
    """The standard error of an AUC measured on so many positives and negatives (Hanley & McNeil 1982);
    infinite without both."""
    if not (positives > 0 and negatives > 0):
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def proportion_standard_error(value: float, rows: float, class_shares: Sequence[float] = ()) -> float:
    """The standard error of an accuracy (a binomial proportion) measured on ``rows`` rows at ``value``; with
    the classes' shares of the rows, of a macro average of per-class scores (see the module's notes)."""
    if not rows > 0:
        return math.inf
    variance = max(value * (1 - value), 0.0) / rows
    shares = [s for s in class_shares if s > 0]
    if shares:
        variance *= sum(1 / s for s in shares) / len(shares) ** 2
    return math.sqrt(variance)


def _accuracy_rule(
    name: str,
    drop: float,
    severity: Literal["warning", "critical"],
    action: Literal["log", "retrain"],
    noise_z: float,
) -> AlertRule:
    # The two default accuracy rules watch the same AUC (its CBPE estimate where labels are few) the same way,
    # relative to the reference; they differ in how far it drops, how sure the drop must be and what it does.
    return AlertRule(
        name,
        "performance",
        "auc",
        "<",
        drop,
        severity,
        action,
        feature=MODEL_TARGET,
        min_rows=200,
        fallback_check="estimated",
        fallback_method="auc",
        relative_to="reference",
        noise_z=noise_z,
    )


DEFAULT_ALERTS: list[AlertRule] = [
    _accuracy_rule("accuracy-low", 0.05, "warning", "log", noise_z=3.0),
    _accuracy_rule("accuracy-critical", 0.10, "critical", "retrain", noise_z=4.0),
    AlertRule("drift", "drift", DRIFT_SCORE, ">", 0.3, "warning", "log"),
    AlertRule("missing-values", "quality", "missing_rate", ">", 0.10, "critical", "log"),
    AlertRule("latency-p99", "serving", "latency_p99_ms", ">", 200.0, "warning", "log"),
    AlertRule("pipeline-failing", "pipeline", "failure_streak", ">", 2, "critical", "log"),
    AlertRule("prediction-log-overflow", "serving", "log_overflow", ">", 0, "critical", "log"),
]


ACCURACY_RULES = ("accuracy-low", "accuracy-critical")
# The margins of the two accuracy rules (warning, retrain) per metric when it is not AUC, and noise_z where the
# metric has a noise model. RMSE and MAE margins are shares of the reference.
TASK_MARGINS: dict[str, tuple[float, float]] = {
    "accuracy": (0.05, 0.10),
    "macro_f1": (0.05, 0.10),
    "weighted_f1": (0.05, 0.10),
    "log_loss": (0.10, 0.25),
    "rmse": (0.25, 0.50),
    "mae": (0.25, 0.50),
    "r2": (0.05, 0.10),
}
# The estimate a realized metric falls back to, where NannyML makes one (monitoring.estimation.ESTIMATED).
ESTIMATED_METRICS = {"multiclass": ("accuracy", "macro_f1"), "regression": ("rmse", "mae")}


def task_alerts(rules: list[AlertRule], kind: str, metric: str) -> list[AlertRule]:
    """A model's alert rules with the default accuracy rules (untouched, as ``DEFAULT_ALERTS`` has them) watching
    the metric that judges it: a binary model's AUC rules stay as they are; a multiclass or regression model's
    watch ``metric`` with that metric's margins and noise model (see the module's notes). Rules a spec wrote
    itself are its own."""
    if kind == "binary":
        return list(rules)
    defaults = {r.name: r for r in DEFAULT_ALERTS if r.name in ACCURACY_RULES}
    higher = higher_is_better(metric)
    estimated = metric in ESTIMATED_METRICS.get(kind, ())
    out = []
    for rule in rules:
        if defaults.get(rule.name) != rule:
            out.append(rule)
            continue
        margin = TASK_MARGINS.get(metric, (0.05, 0.10))[ACCURACY_RULES.index(rule.name)]
        out.append(
            msgspec.structs.replace(
                rule,
                method=metric,
                op="<" if higher else ">",
                threshold=margin,
                fallback_check="estimated" if estimated else None,
                fallback_method=metric if estimated else None,
                noise_z=rule.noise_z if metric in PROPORTIONS else 0.0,
            )
        )
    return out
