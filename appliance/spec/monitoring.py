"""The spec's ``[monitoring]`` section: window length, drift methods and the thresholds that alert.

Drift thresholds are effect sizes (PSI, KS distance, Jensen–Shannon distance, Cramér's V) and a
false-alarm rate: a statistic alerts past the larger of its effect-size floor and the value chance
alone exceeds between the window's rows and the reference's at that rate
(``appliance.monitoring.drift``). The floor keeps a 100k-row window from alerting on a shift nobody
cares about; the chance bound keeps a 200-row window from alerting on noise.
``scripts/bench/drift_volume.py`` shows clean windows of 200 to 100k rows, against references of
500 and 50k rows, alerting on at most 0.6 % of feature-windows of any kind of feature and size
(the floors alone: up to 100 %); on the bundled sample's ~3,000-row days against its 30,000-row
reference the floors are the larger, and flag the drift episode from its first day
(tests/test_monitoring_sample.py).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import msgspec

from appliance.errors import InvalidInput
from appliance.spec.schedules import trigger

ContinuousMethod = Literal["psi", "ks"]
CategoricalMethod = Literal["psi", "jensen_shannon", "chi2"]


class DriftThresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A window drifts on a feature when a statistic is above both its effect-size floor (below) and what
    chance alone exceeds at the window's and the reference's rows, at ``false_alarm_rate`` per feature and
    window, shared equally by the feature's statistics (two by default: 0.5 % each).

    Chance sets the larger bound on small windows: against a 50,000-row reference about 0.12 (KS) and 0.14
    (PSI, 10 quantile bins) at 200 rows, 0.055 and 0.026 at 1,000, the floors from about 2,000 rows; more
    where categories are rare (PSI 0.46 at 200 rows for 30 categories down to 0.4 %). The floors are what a
    shift worth an alert gives: a 35 % price rise gives PSI 0.02-0.05 and KS 0.06-0.09 on the sample, far
    under the textbook PSI line of 0.1. Before the chance bound they were the whole threshold, tuned to the
    sample's ~3,000-row days; a spec that sets them keeps their meaning at that volume and above.

    All features together (the rows marked ``*``) are one more statistic, at the whole ``false_alarm_rate``:
    a window alerts when its mean PCA reconstruction error passes the reference's out-of-sample mean by the
    larger of ``reconstruction_error`` (a relative rise) and the rise chance alone exceeds at the window's
    rows (``appliance.monitoring.estimation.reconstruction_drift``).
    """

    psi: float = 0.02  # effect-size floor: PSI of a feature, window against reference
    ks: float = 0.045  # effect-size floor: Kolmogorov-Smirnov distance (numeric features)
    jensen_shannon: float = 0.05  # effect-size floor: Jensen–Shannon distance, base 2, 0..1
    chi2: float = 0.04  # effect-size floor: Cramér's V of the (reference, window) × category table
    reconstruction_error: float = 0.05  # effect-size floor: all features' PCA reconstruction error, relative rise
    false_alarm_rate: float = 0.01  # share of clean windows that alert on a feature (or the prediction), by chance

    def __post_init__(self) -> None:
        if not 0 < self.false_alarm_rate < 1:
            raise InvalidInput(
                f"monitoring.drift.false_alarm_rate {self.false_alarm_rate!r} must be between 0 and 1, e.g. 0.01"
            )


class PredictionThresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Effect-size floors on the model's own output, by task. ``psi`` is of the binary score's distribution;
    of a multiclass model's chosen classes and of each class's probability; of a regression model's value
    (numbers on 10 reference-quantile bins).

    As with features, each is the larger of its floor and what chance alone exceeds at the window's and the
    reference's rows (``drift.false_alarm_rate``, shared by the prediction's statistics). A class's share
    of a window of n rows varies by sqrt(s(1 - s)(1/n + 1/m)) by chance: 0.009 for a third of 3,000 rows,
    so 0.05 is over five standard errors there, but 1.5 on a 200-row window, where chance sets the bound.
    A value's mean varies by sqrt(1/n + 1/m) reference standard deviations: 0.018 at 3,000 rows.
    """

    psi: float = 0.02  # PSI of the score, chosen classes, class probabilities or value (see above)
    positive_rate_change: float = 0.01  # binary: |predicted positive rate - the reference's|, absolute
    predicted_rate_change: float = 0.05  # multiclass: |a class's share of the predictions - the reference's|
    mean_shift: float = 0.10  # regression: |mean value - the reference's|, in reference standard deviations


class QualityThresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_missing_rate: float = 0.10  # the reference architecture's "missing rate > 10 %" rule
    max_violation_rate: float = 0.01  # share of rows out of range or not an allowed value
    min_volume_ratio: float = 0.5  # rows in a window against the reference's rate per window
    max_volume_ratio: float = 2.0  # the same ratio, at most


class PerformanceThresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the metric that judges the model (the spec's ``[validation] metric``, else the task's: AUC,
    macro F1, RMSE) flags a window, realized from labels or estimated without them (CBPE, DLE).

    AUC has its own pair of settings, as before. Any other metric's limit is ``metric_limit`` when the spec
    sets it, else derived from the version's own reference value of the metric: less ``max_metric_drop``
    for a metric where higher is better (accuracy, F1, R²), times 1 + ``max_metric_rise`` for one where
    lower is better (RMSE, MAE, log loss: an error 25 % larger than the version's own on held-out rows).
    """

    min_auc: float | None = None  # realized AUC from labels, or CBPE's estimate without them; unset: see below
    max_auc_drop: float = 0.10  # with min_auc unset, the floor is the version's reference AUC less this
    metric_limit: float | None = (
        None  # a non-AUC judging metric: its floor (higher is better) or ceiling; unset: derived
    )
    max_metric_drop: float = 0.10  # with metric_limit unset: the floor is the reference value less this
    max_metric_rise: float = 0.25  # with metric_limit unset: the ceiling is the reference value times 1 + this

    @property
    def auc_floor(self) -> float:
        """The AUC below which a window is flagged; NaN (nothing flagged) until a floor is known."""
        return math.nan if self.min_auc is None else self.min_auc

    def limit(self, metric: str) -> float:
        """The value of ``metric`` past which a window is flagged; NaN (nothing flagged) until one is known."""
        if metric == "auc":
            return self.auc_floor
        return math.nan if self.metric_limit is None else self.metric_limit


class MonitoringSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    schedule: str | None = "every 1h"  # when the monitor job runs: 'every 10m' or a crontab line; None: never
    window: str = "1d"  # event-time window length: '1d', '12h', '7d', ...
    psi_bins: int = 10  # reference-quantile bins for continuous PSI
    min_window_rows: int = 200  # smaller windows are reported but never alert (one of a single row gets no estimate or reconstruction error)
    max_windows: int = 1000  # a run checks the newest windows holding traffic, at most this many
    continuous_methods: list[ContinuousMethod] = msgspec.field(  # drift statistics of numbers
        default_factory=lambda: ["psi", "ks"]
    )
    categorical_methods: list[CategoricalMethod] = msgspec.field(  # drift statistics of categories and booleans
        default_factory=lambda: ["psi", "jensen_shannon"]
    )
    drift: DriftThresholds = DriftThresholds()  # feature drift floors and the drift false-alarm rate
    prediction: PredictionThresholds = PredictionThresholds()  # floors on the model's scores
    quality: QualityThresholds = QualityThresholds()  # data-quality thresholds
    performance: PerformanceThresholds = PerformanceThresholds()  # accuracy thresholds

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[1-9]\d*[hdw]", self.window):
            raise InvalidInput(f"monitoring.window {self.window!r} is not like '1d', '12h' or '1w'")
        if self.psi_bins < 2:
            raise InvalidInput("monitoring.psi_bins must be at least 2")
        if self.max_windows < 1:
            raise InvalidInput("monitoring.max_windows must be at least 1")
        if self.schedule is not None:
            trigger(self.schedule)
