"""The model spec: one TOML file per model — data, features, target, training, gates, serving."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import msgspec

from appliance.errors import InvalidInput
from appliance.spec.alerts import DEFAULT_ALERTS, AlertRule
from appliance.spec.durations import check_duration, parse_duration
from appliance.spec.monitoring import MonitoringSection
from appliance.spec.schedules import trigger
from appliance.task import DEFAULT_METRIC, METRICS, TaskKind
from appliance.toml_file import FieldError, load_toml

FeatureType = Literal["float", "integer", "boolean", "category"]
AggregateFunction = Literal["count", "sum", "mean", "min", "max"]
# Limits msgspec checks while it reads the file, so the error names the field.
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
NotNegative = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]


class Feature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # the column in the request, or in [data] entities
    type: FeatureType  # category: a vocabulary learnt at training; unseen values read as missing


class ModelSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # the model's name in the registry, the API and the CLI
    description: str = ""  # one line for people


class DataSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the model's data is, and the event times it takes around the machine's clock. A predict
    record dated more than ``event_time_past`` before the clock or more than ``event_time_future`` after it
    is refused (422), and monitoring builds no window outside those bounds; an ingested row dated after the
    future bound is quarantined (history may be of any age: ingest has no past bound). Two years admit a
    replay of last year's traffic from any day of this one; widen it to replay older events (a refusal
    names the setting)."""

    source: str  # labelled history: a Parquet/CSV file or folder, relative to the spec
    contract: str  # the data contract the source is checked against
    entities: str | None = None  # entity attributes (one row per entity key)
    live: str | None = None  # later traffic the demo replays through the API
    event_time_past: str = "730d"  # predict: an event time older than this before the clock is refused ('3650d')
    event_time_future: str = "1d"  # predict and ingest: an event time later than this after the clock is refused

    def __post_init__(self) -> None:
        check_duration("event_time_past", self.event_time_past)
        check_duration("event_time_future", self.event_time_future)

    @property
    def horizon(self) -> EventHorizon:
        """The event times the model takes, around the clock."""
        return EventHorizon(
            parse_duration(self.event_time_past).total_seconds(),
            parse_duration(self.event_time_future).total_seconds(),
            self.event_time_past,
            self.event_time_future,
        )


class EventHorizon(NamedTuple):
    """The event times a model takes: from ``past_s`` seconds before the clock to ``future_s`` after it,
    as the spec's ``[data] event_time_past`` and ``event_time_future`` (``past``, ``future``) write them."""

    past_s: float
    future_s: float
    past: str
    future: str

    def bounds(self, now: float) -> tuple[float, float]:
        """The earliest and the latest event time taken at ``now`` (epoch seconds)."""
        return now - self.past_s, now + self.future_s


class Aggregation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A windowed aggregation over the entity's history, e.g. the mean amount over 30 days."""

    name: str  # the feature's name
    function: AggregateFunction  # count of events, or sum, mean, min or max of column
    window: str  # '1h', '7d', '30d': events in [s - window, s] count, s the entity's latest event
    column: str | None = None  # the history column aggregated; count without one counts events

    def __post_init__(self) -> None:
        check_duration("window", self.window)
        if '"' in self.name:  # the online store sets it by a SQLite JSON path, which cannot escape one
            raise FieldError("name", f"aggregation '{self.name}' may not hold '\"'; rename it (e.g. with ' instead)")
        if self.function != "count" and self.column is None:
            raise FieldError("column", f"aggregation '{self.name}' ({self.function}) needs a column")

    @property
    def type(self) -> FeatureType:
        return "integer" if self.function == "count" else "float"


class Derived(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request-time feature: ``ratio`` of two features, or ``since_last`` (seconds since the entity's
    latest earlier event)."""

    name: str  # the feature's name
    op: Literal["ratio", "since_last"]  # ratio: of[0] / of[1]; since_last: seconds since the entity's last event
    of: list[str] = []  # ratio: the two features divided, numerator first; since_last: none

    def __post_init__(self) -> None:
        wanted = 2 if self.op == "ratio" else 0
        if len(self.of) != wanted:
            raise FieldError(
                "of", f"derived feature '{self.name}' ({self.op}) takes {wanted} feature names in 'of', got {self.of}"
            )

    @property
    def type(self) -> FeatureType:
        return "float"


class FeaturesSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event_time: str  # the column of each row's time; windows and point-in-time joins use it
    request: list[Feature]  # the fields a prediction request carries, one table each
    entity_key: str | None = None  # the column naming whose history a row belongs to; None: each row stands alone
    entity_attributes: list[Feature] = []  # columns of [data] entities, joined on entity_key
    aggregations: list[Aggregation] = []  # windowed aggregations over each entity's history
    derived: list[Derived] = []  # features computed at request time from the others
    ttl: str | None = None  # history older than this before the event is not used (None: no limit)
    update_online: bool = True  # every answered request is an event: the server moves its entity's online row forward

    def __post_init__(self) -> None:
        if self.ttl is not None:
            check_duration("ttl", self.ttl)


class TargetSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    column: str  # the label column of the source
    task: TaskKind = "binary"  # binary (0/1, true/false or two texts), multiclass (one of classes), regression
    classes: list[str | int] | None = (
        None  # multiclass: the labels, in output order (default: the contract's allowed_values)
    )
    threshold: float = 0.5  # binary: probability at or above which the label is 1
    positive: str | None = None  # binary: which of a text target's two values is the positive class ("bad")

    def __post_init__(self) -> None:
        if self.positive is not None and self.task != "binary":
            raise FieldError(
                "positive",
                f"a {self.task} target has no positive class (it names one of a binary target's two text values); "
                "remove it or set the task",
            )
        if self.classes is None:
            return
        if self.task != "multiclass":
            raise FieldError(
                "classes",
                f'a {self.task} target has no classes (they are for task = "multiclass"); remove them or set the task',
            )
        texts = [str(c) for c in self.classes]
        if len(set(texts)) != len(texts):
            twice = sorted({t for t in texts if texts.count(t) > 1})
            raise FieldError("classes", f"lists {twice} more than once; list each class once")
        if len(self.classes) < 3:
            raise FieldError(
                "classes",
                f'must list three or more labels, got {self.classes} (two classes: task = "binary" with labels 0/1)',
            )
        if len({type(c) for c in self.classes}) > 1:
            raise FieldError(
                "classes", f"{self.classes} mixes text and numbers; write them all as the target column holds them"
            )


class SearchRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One hyperparameter's search space: a list of choices, or a numeric range (log-uniform if ``log``)."""

    choices: list[float | int | str | bool] | None = None  # draw one of these (low and high are then unused)
    low: float | None = None  # the range's lower end
    high: float | None = None  # the range's upper end
    log: bool = False  # draw log-uniformly (low must be above 0)
    integer: bool = False  # round the draw to an integer


class SearchSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trials: int = 0  # 0: no search, train once with [training.params]
    validation_days: int = 5  # the last N training days score the trials (the evaluation days stay unseen)
    space: dict[str, SearchRange] = {}  # hyperparameter name: its range; a draw overrides [training.params]


class TrainingSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    trainer: Literal["lightgbm", "mlp"] = "lightgbm"  # gradient-boosted trees, or a PyTorch multilayer perceptron
    eval_days: AtLeastOne = 10  # the last N days of the snapshot are held out for evaluation
    retrain_eval_days: AtLeastOne = 1  # a retrain holds out only the newest N labelled days, so fresh patterns train
    retrain_min_per_class: NotNegative = (
        100  # a retrain's held-out days widen (up to eval_days) until each class has this many
    )
    seed: int = 7  # seeds training and the search's draws, so a run reproduces
    params: dict[str, float | int | str | bool] = {}  # the trainer's hyperparameters, passed through as given
    search: SearchSection = SearchSection()  # random hyperparameter search
    checkpoint_every: int = 1  # MLP: epochs between checkpoints (a killed run resumes from the last)
    quantize: bool = False  # MLP: also build an INT8 dynamically quantized ONNX variant
    schedule: str | None = None  # retrain on a schedule: 'every 1d' or a crontab line ('0 3 * * 1'); None: never


class ValidationSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    metric: str | None = None  # the metric search, gates and regressions judge (default: auc, macro_f1, rmse by task)
    min_metric: float | None = (
        None  # the metric on the evaluation days, at least (None: not judged; binary AUC: min_auc)
    )
    max_metric: float | None = None  # the metric on the evaluation days, at most (None: not judged)
    min_auc: float = 0.60  # binary: a new version's AUC on the evaluation days, at least (above chance)
    max_parity_diff: float = (
        1e-5  # ONNX against the native model: largest probability gap (regression: value gap / RMS value)
    )
    recall_at_precision: float = 0.80  # recall is measured at the best threshold with this precision
    min_recall: float = 0.0  # recall at recall_at_precision, at least (default 0: not judged)
    max_regression: float = (
        0.02  # the metric may be at most this much worse than production's, same rows (rmse, mae: a share)
    )
    segments: list[str] = []  # feature columns whose values are segments (e.g. country)
    max_segment_gap: float = (
        0.10  # largest gap of the metric between segments (rmse, mae: a share of the overall value)
    )
    segment_min_positives: int = 30  # smaller segments are reported, not judged: positives (binary), rows (otherwise)
    max_p99_ms: float = 10.0  # p99 single-row ONNX Runtime inference, on the provider [serving] provider gives it
    max_quarantined_share: float = 0.05  # data validation: share of the newest batch quarantined
    max_missing_share: float = 0.10  # data validation: share of nulls in any feature


class ServingSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_batch_rows: AtLeastOne = 1000  # a larger batch request is refused (413)
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = (
        1.0  # micro-batching: how long a single-row request may wait for company
    )
    max_batch: AtLeastOne = 64  # micro-batching: rows per ONNX Runtime call at most
    gpu_max_batch: AtLeastOne = 1024  # micro-batching on the CUDA provider: rows per call at most
    provider: Literal["auto", "cpu", "cuda"] = (
        "auto"  # ONNX Runtime's provider: auto (CUDA for a neural network when present), cpu, cuda (else CPU, logged)
    )


class DeploymentSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    canary_steps: list[Percent] = msgspec.field(
        default_factory=lambda: [5, 25, 50, 100]
    )  # percent of traffic on the candidate, step by step, rising to 100
    min_sample: AtLeastOne = 200  # predictions per arm before a canary step is judged
    max_error_rate_increase: float = (
        0.01  # candidate error rate minus production's, at most (a larger one rolls back only beyond chance)
    )
    max_p99_latency_ratio: float = (
        1.5  # candidate latency over production's (geometric mean and p99, each with a confidence bound), at most
    )
    max_psi: float = (
        0.2  # PSI of the candidate's live answers against its own evaluation answers, beyond production's own, at most
    )
    ab_key: str | None = None  # the field an A/B split hashes (default: features.entity_key)
    ab_min_outcomes: AtLeastOne = (
        30  # outcomes on each A/B arm before its interval is shown or the candidate can be chosen
    )
    on_retrain: Literal["approve", "canary"] = "approve"  # a retrain an alert started: wait for a human, or canary it

    def __post_init__(self) -> None:
        steps = self.canary_steps
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)):
            raise FieldError("canary_steps", f"{steps} must rise strictly and end at 100, e.g. [5, 25, 50, 100]")


class ModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: ModelSection  # the model's name and description
    data: DataSection  # the labelled history, its contract, entities and live traffic
    features: FeaturesSection  # the model's inputs, computed the same way offline and online
    target: TargetSection  # the label
    training: TrainingSection = TrainingSection()  # how a version is trained
    validation: ValidationSection = ValidationSection()  # the gates a version must pass before it can serve
    serving: ServingSection = ServingSection()  # the prediction API's limits and micro-batching
    deployment: DeploymentSection = DeploymentSection()  # canary rollout, A/B splits, and what a retrain does
    monitoring: MonitoringSection = MonitoringSection()  # drift, data quality and accuracy of served traffic
    alerts: list[AlertRule] = msgspec.field(  # rules over the monitoring results
        default_factory=lambda: list(DEFAULT_ALERTS)
    )
    path: Path | None = None  # where the spec was read from; relative data paths resolve there

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def metric(self) -> str:
        """The metric that judges this model: search trials, gates, regressions against production."""
        return self.validation.metric or DEFAULT_METRIC[self.target.task]

    @property
    def model_features(self) -> list[Feature]:
        """The model's inputs, in the order the model sees them."""
        computing: list[Aggregation | Derived] = [*self.features.aggregations, *self.features.derived]
        computed = [Feature(f.name, f.type) for f in computing]
        return [*self.features.request, *self.features.entity_attributes, *computed]

    def resolve(self, relative: str) -> Path:
        """A data path from the spec, resolved against the spec's folder."""
        base = self.path.parent if self.path else Path.cwd()
        return (base / relative).resolve()


def load_spec(path: Path) -> ModelSpec:
    """Read and check a model spec; a bad spec is an error that names the file and the field."""
    path = Path(path)
    spec = load_toml(path, ModelSpec, "model spec", "a .toml spec", fix="fix the spec and try again", check=check_spec)
    return msgspec.structs.replace(spec, path=path.resolve())


def check_spec(spec: ModelSpec) -> None:
    """The rules across a spec's tables (each table checks its own fields as it is read)."""
    names = [f.name for f in spec.model_features]
    if len(set(names)) != len(names):
        raise FieldError("features", f"a feature is listed twice in {names}")
    own = [n for n in names if n.startswith("_")]
    if own:  # monitoring reads the log beside columns of its own (_score, _label, _latency_ms, ...)
        raise FieldError(
            "features",
            f"feature(s) {own} start with '_', as the appliance's own columns do; rename them (in the data too)",
        )
    key, target = spec.features.entity_key, spec.target.column
    if key is not None and key in names:  # the join and the log carry it as the key: as a feature too, twice
        raise FieldError(
            "features",
            f"the entity key '{key}' is also listed as a feature; remove it from the features (a request carries "
            "its key all the same)",
        )
    if target in names:
        raise FieldError(
            "features",
            f"the target '{target}' is also listed as a feature (the model would read its answer); remove it",
        )
    _check_features(spec.features, names)
    if spec.training.schedule is not None:
        _check_schedule("training.schedule", spec.training.schedule)
    metric, task = spec.validation.metric, spec.target.task
    if metric is not None and metric not in METRICS[task]:
        raise FieldError(
            "validation.metric", f"'{metric}' is not a {task} metric; use one of {', '.join(METRICS[task])}"
        )


def _check_features(features: FeaturesSection, names: list[str]) -> None:
    if features.entity_key is None:
        needing = (
            [f.name for f in features.entity_attributes]
            + [a.name for a in features.aggregations]
            + [d.name for d in features.derived if d.op == "since_last"]
        )
        if needing:
            raise FieldError(
                "features.entity_key",
                f"feature(s) {needing} belong to an entity, but [features] "
                'names no entity_key; add entity_key = "COLUMN" or remove them',
            )
    categories = {f.name for f in (*features.request, *features.entity_attributes) if f.type == "category"}
    for i, d in enumerate(features.derived):
        unknown = [n for n in d.of if n not in names]
        if unknown:
            raise FieldError(
                f"features.derived[{i}].of", f"derived feature '{d.name}' uses unknown feature(s) {unknown}"
            )
        divided = [n for n in d.of if n in categories]
        if divided:
            raise FieldError(f"features.derived[{i}].of", f"derived feature '{d.name}' divides categories {divided}")


def _check_schedule(field: str, text: str) -> None:
    try:
        trigger(text)
    except InvalidInput as e:
        raise FieldError(field, str(e)) from None


def spec_digest(path: Path) -> str:
    """sha256 of a spec file's bytes, recorded with each run."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
