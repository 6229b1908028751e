"""What the Litestar routes take and answer, as msgspec Structs.

Each handler declares its body as ``data: SomeStruct`` and returns one of these (or a list of them, or a
Struct of the stage it acts through: ``ModelVersion``, ``Deployment``, ``Alert``, ``PipelineRun``), so the
OpenAPI schema is generated from them. A body is read strictly, with the errors the predict route gives
(``request_body.TypedRequest``). The predict route's own body and answer are described in ``docs``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from appliance.deployment.deployments import Deployment
from storage.database import MAX_INTEGER

# Bounds a client cannot pass without a 422 naming the field: past them SQLite cannot store the
# number, or an A/B report's sums overflow.
Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)]
Position = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)]
OutcomeValue = Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]


# --- request bodies ---


class Outcome(msgspec.Struct):
    request_id: str
    # Read by the model's task (serving.feedback): a flag or 0/1, a class (text or a number), or a value.
    outcome: Annotated[
        OutcomeValue | str | bool,
        msgspec.Meta(
            description="in the model's terms: binary 1 or 0 (or true/false); multiclass the class, as declared "
            '("cat" or 2); regression the observed value'
        ),
    ]
    position: Position = 0  # which record of a list request (0 for a single record)


class FeedbackRequest(msgspec.Struct):
    outcomes: list[Outcome]
    # true: an outcome that differs from the one its prediction already has replaces it (a label correction);
    # false: such an outcome is a 409 and nothing of the request is recorded (the same outcome again is a retry)
    replace: bool = False


class PromoteRequest(msgspec.Struct):
    version: Version
    reason: str = ""


class ReasonRequest(msgspec.Struct):
    reason: str = ""


class AdvanceRequest(msgspec.Struct):
    reason: str = ""
    force: bool = False  # advance without the evidence the step needs (a reason is then required, audited)


class DeploymentRequest(msgspec.Struct):
    strategy: str  # blue-green | canary | shadow | ab
    version: Version
    percent: float | None = None  # A/B: the candidate's share (default 50)
    split_key: str | None = None  # A/B: the request field to split by (default: the spec's)


# --- answers ---


class UnknownOutcome(msgspec.Struct):
    request_id: str
    position: int


class FeedbackAnswer(msgspec.Struct):
    accepted: int
    unknown: list[UnknownOutcome]  # the outcomes whose request the log does not hold


class DeploymentShown(msgspec.Struct):
    strategy: str
    candidate: int
    traffic_percent: float


class ServedModel(msgspec.Struct):
    name: str
    serving_version: int | None
    deployment: DeploymentShown | None
    provider: str | None = None  # the ONNX Runtime provider serving production (CPUExecutionProvider, …)


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    ready: bool
    serving: dict[str, int]  # model → the version it serves
    not_serving: list[str]


class RetrainStarted(msgspec.Struct):
    model: str
    run_id: str
    status: str
    watch: str  # the run's URL


class RunStarting(msgspec.Struct):
    """A retrain whose worker process has not recorded its run yet."""

    id: str
    model: str
    status: str


class DeploymentReport(msgspec.Struct, omit_defaults=True):
    """``deployments.report``: the deployment, its traffic per arm, and its strategy's comparison."""

    deployment: Deployment
    predictions: dict[str, int]  # arm → successful predictions
    step: dict[str, Any] | None = None  # a running canary's step and, once sampled, its analysis
    ab: dict[str, Any] | None = None  # an A/B test's outcomes per arm
    shadow: dict[str, Any] | None = None  # a shadow's agreement, correlation and latency


class MonitoringResult(msgspec.Struct):
    model: str
    version: int
    window_start: str
    window_end: str
    check: str
    feature: str
    method: str
    value: float | None
    threshold: float | None
    rows: int
    alert: bool
    computed_at: float


class MonitoringResults(msgspec.Struct):
    model: str
    results: list[MonitoringResult]
