"""Deployment state in metadata.db: start, advance, abort, and the automated canary analysis.

Every step is one transaction with its audit entry. Whatever puts a candidate in production —
a blue-green switch, a canary reaching 100 %, a shadow or A/B winner — goes through
``Registry.promote``, the one promotion function.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

import msgspec
import polars as pl

from appliance.data.declared import model_task
from appliance.deployment.analysis import ab_report_for, shadow_report
from appliance.deployment.canary import ArmSample, Evaluated, Verdict, judge_canary
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.home import Home
from appliance.monitoring.reference import load_reference, task_output
from appliance.spec import ModelSpec
from appliance.task import Task
from storage.database import transaction
from storage.prediction_log import PredictionStore

STRATEGIES: tuple[str, ...] = ("blue-green", "canary", "shadow", "ab")
ANALYST = "canary-analysis"
# A canary is judged on at most this many of each arm's latest predictions since it began.
MAX_SAMPLE = 20_000


class Deployment(msgspec.Struct, frozen=True):
    id: int
    model: str
    strategy: str
    candidate_version: int
    baseline_version: int
    status: str  # running | completed | aborted | rolled_back
    step: int  # canary: index into the spec's steps; blue-green: 0 standby, 1 switched
    traffic_percent: float  # share of requests the candidate answers (canary, A/B)
    split_key: str | None  # the request field whose hash splits traffic
    step_started_at: float
    started_at: float
    ended_at: float | None
    reason: str

    @property
    def switched(self) -> bool:
        """A blue-green deployment whose candidate is already production."""
        return self.strategy == "blue-green" and self.step == 1


def start(
    home: Home,
    model: str,
    strategy: str,
    version: int,
    actor: str = "cli",
    percent: float | None = None,
    split_key: str | None = None,
) -> Deployment:
    """Start deploying a candidate version next to production; one deployment per model at a time."""
    if strategy not in STRATEGIES:
        raise InvalidInput(f"unknown deployment strategy '{strategy}'; choose from {', '.join(STRATEGIES)}")
    spec = home.spec(model)
    _check_split(spec, strategy, percent, split_key)
    reg = home.registry
    production = reg.alias(model, "production")
    if production is None:
        raise Conflict(
            f"model '{model}' has nothing in production to deploy against; promote a first "
            f"version with `appliance promote {model} VERSION`"
        )
    target = reg.version(model, version)
    if target.status != "registered":
        raise Conflict(f"model '{model}' version {version} failed its validation gates and cannot be deployed")
    if version == production:
        raise Conflict(f"model '{model}' version {version} is already in production")
    traffic, key = 0.0, None
    if strategy == "canary":
        traffic, key = spec.deployment.canary_steps[0], spec.features.entity_key
    elif strategy == "ab":
        traffic, key = percent or 50.0, split_key or spec.deployment.ab_key or spec.features.entity_key
    now = time.time()
    with transaction(home.conn):
        try:
            cur = home.conn.execute(
                "INSERT INTO deployments (model, strategy, candidate_version, baseline_version, status, "
                "traffic_percent, split_key, step_started_at, started_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (model, strategy, version, production, traffic, key, now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"model '{model}' already has a deployment running; see `appliance deploy {model} "
                "status`, then advance or abort it"
            ) from None
        reg.audit(
            actor,
            "deployment_started",
            model,
            version,
            {
                "deployment": cur.lastrowid,
                "strategy": strategy,
                "baseline": production,
                "traffic_percent": traffic,
                "split_key": key,
            },
        )
    return _get(home.conn, cur.lastrowid)


def _check_split(spec: ModelSpec, strategy: str, percent: float | None, split_key: str | None) -> None:
    """Refuse a percent or split key that would not split traffic as asked. Worded for the CLI and the API
    alike (`--percent`/`percent`, `--key`/`split_key`): each caller passes them through unchanged."""
    given = [name for name, value in (("percent", percent), ("split key", split_key)) if value is not None]
    if strategy != "ab" and given:
        steps = spec.deployment.canary_steps
        instead = {
            "canary": f"its first step ({steps[0]:g} %) and the next come from the spec's [deployment] canary_steps",
            "shadow": "it scores every request off the response path",
            "blue-green": "it switches all traffic at once",
        }[strategy]
        raise InvalidInput(
            f"a {strategy} deployment takes no {' or '.join(given)}, which only an A/B split uses: {instead}; "
            f"leave {'them' if len(given) > 1 else 'it'} out"
        )
    if percent is not None and not 0 < percent < 100:
        raise InvalidInput(f"percent must be above 0 and below 100, got {percent:g}")
    # The router hashes this field of the request's record; a field no request carries would split every
    # request by its request id, so one user's requests would land on both arms.
    carried = _split_fields(spec)
    if split_key is not None and split_key not in carried:
        raise InvalidInput(
            f"split key '{split_key}' is not a field a request for '{spec.name}' carries; split by one of "
            f"{', '.join(carried)}"
        )


def _split_fields(spec: ModelSpec) -> list[str]:
    """The fields an A/B split can hash, each one a request carries: the entity key, the spec's
    [deployment] ab_key (sent beside the features) and the request features. Not the event time: hashing
    it would split one user's requests between the arms."""
    fields = [spec.features.entity_key, spec.deployment.ab_key, *(f.name for f in spec.features.request)]
    return list(dict.fromkeys(f for f in fields if f is not None))


def current(home: Home, model: str) -> Deployment | None:
    """The model's running deployment, if any."""
    home.registry.model(model)
    row = home.conn.execute("SELECT * FROM deployments WHERE model = ? AND status = 'running'", (model,)).fetchone()
    return Deployment(**dict(row)) if row else None


def latest(home: Home, model: str) -> Deployment | None:
    """The model's most recent deployment, running or ended."""
    home.registry.model(model)
    row = home.conn.execute("SELECT * FROM deployments WHERE model = ? ORDER BY id DESC LIMIT 1", (model,)).fetchone()
    return Deployment(**dict(row)) if row else None


def history(home: Home, model: str) -> list[Deployment]:
    """Every deployment of the model, oldest first; an ended one's ``reason`` is its verdict."""
    home.registry.model(model)
    rows = home.conn.execute("SELECT * FROM deployments WHERE model = ? ORDER BY id", (model,))
    return [Deployment(**dict(r)) for r in rows]


def running(conn: sqlite3.Connection) -> list[Deployment]:
    """Every running deployment (one cheap query; the server polls it)."""
    return [Deployment(**dict(r)) for r in conn.execute("SELECT * FROM deployments WHERE status = 'running'")]


def advance(
    home: Home, model: str, actor: str = "cli", reason: str = "", expected_step: int | None = None, force: bool = False
) -> Deployment:
    """Move a deployment one step on: the next canary step, the blue-green switch, or promotion.

    A shadow or A/B candidate is promoted, and a switched blue-green releases its standby (the instant way
    back), only with evidence: ``min_sample`` predictions compared with production, ``ab_min_outcomes``
    outcomes on each A/B arm, ``min_sample`` predictions served since the switch. ``force`` goes on without
    it, for a stated reason that the audit log keeps."""
    d = _running(home, model)
    if expected_step is not None and d.step != expected_step:
        raise Conflict(f"the deployment of '{model}' moved on meanwhile (now at step {d.step})")
    if force:
        if not reason.strip():
            raise InvalidInput("a forced advance needs a reason (--reason '…'); the audit log keeps it")
        reason = f"forced: {reason}"
    else:
        _require_evidence(home, d)
    if d.strategy == "canary":
        steps = home.spec(model).deployment.canary_steps
        nxt = d.step + 1
        if nxt < len(steps) and steps[nxt] < 100:
            return _move(
                home,
                d,
                actor,
                "canary_advanced",
                step=nxt,
                traffic=steps[nxt],
                detail={"traffic_percent": steps[nxt], "reason": reason},
            )
        return _promote_and_finish(home, d, actor, reason or "canary reached 100 %")
    if d.strategy == "blue-green" and not d.switched:
        home.registry.promote(model, d.candidate_version, actor=actor, reason=reason or "blue-green switch")
        return _move(
            home,
            d,
            actor,
            "blue_green_switched",
            step=1,
            traffic=100.0,
            detail={"standby": d.baseline_version, "reason": reason},
        )
    if d.strategy == "blue-green":
        return _finish(home, d, "completed", actor, reason or "standby released")
    return _promote_and_finish(home, d, actor, reason or f"{d.strategy} candidate chosen")


def _require_evidence(home: Home, d: Deployment) -> None:
    """Refuse to promote a shadow or A/B candidate, or to release a blue-green standby, before there is evidence
    that the candidate serves as well (a canary is advanced by its analysis, or by a person's step)."""
    policy = home.spec(d.model).deployment
    store = PredictionStore(home.layout.predictions_db)
    try:
        if d.strategy == "shadow":
            have, need = len(store.shadow_pairs(d.id, limit=policy.min_sample)), policy.min_sample
            what = "predictions compared with production"
        elif d.strategy == "ab":
            arms = Counter(arm for arm, *_ in store.outcomes_by_arm(d.id))
            have, need = min(arms["production"], arms["candidate"]), policy.ab_min_outcomes
            what = f"outcomes on its thinner arm (production {arms['production']:,}, candidate {arms['candidate']:,})"
        elif d.strategy == "blue-green" and d.switched:
            have, need = store.arm_count(d.id, "production", d.step_started_at), policy.min_sample
            what = "predictions served since the switch"
        else:
            return
    finally:
        store.close()
    if have < need:
        raise Conflict(
            f"the {d.strategy} of v{d.candidate_version} has {have:,} {what}; it needs {need:,} "
            f"(deployment.{'ab_min_outcomes' if d.strategy == 'ab' else 'min_sample'}) before it can "
            f"advance: wait for traffic, or advance with --force and a --reason"
        )


def abort(
    home: Home,
    model: str,
    actor: str = "cli",
    reason: str = "",
    status: str = "aborted",
    expected_step: int | None = None,
) -> Deployment:
    """Stop a deployment: all traffic back to the baseline (a switched blue-green rolls back, instantly)."""
    d = _running(home, model)
    if expected_step is not None and d.step != expected_step:
        raise Conflict(f"the deployment of '{model}' moved on meanwhile (now at step {d.step})")
    if d.switched:
        if home.registry.alias(model, "production") == d.candidate_version:
            # the switch back ends this deployment in the rollback's own transaction
            home.registry.rollback(
                model,
                actor=actor,
                reason=reason or "blue-green switched back",
                ends_deployment=("rolled_back", reason or f"switched back to v{d.baseline_version}"),
            )
            return _get(home.conn, d.id)
        status = "rolled_back"
    # without a reason, what the abort did: the status already says that it was aborted
    return _finish(home, d, status, actor, reason or f"all traffic back to v{d.baseline_version}")


def analyze_canaries(home: Home, store: PredictionStore, actor: str = ANALYST) -> list[tuple[Deployment, Verdict]]:
    """Judge every running canary whose step has its minimum sample: advance it, or roll it back saying why."""
    judged = []
    answers: dict[tuple[str, int], list[float] | str] = {}  # each version's evaluation answers, read once
    for d in running(home.conn):
        if d.strategy != "canary":
            continue
        if home.registry.alias(d.model, "production") == d.candidate_version:
            _finish(home, d, "completed", actor, "candidate is in production")
            continue
        policy = home.spec(d.model).deployment
        counts = [store.arm_count(d.id, arm, d.step_started_at) for arm in ("production", "candidate")]
        if min(counts) < policy.min_sample:
            continue
        task = model_task(home.spec(d.model))
        # Judged on everything since the canary began: the candidate is the same model at every step, and the
        # rules' error rates are set for one look per step at the growing sample (see canary.py).
        production, candidate = (
            ArmSample.from_rows(store.arm_sample(d.id, arm, d.started_at, MAX_SAMPLE), task)
            for arm in ("production", "candidate")
        )
        verdict = judge_canary(production, candidate, policy, task, _evaluated(home, d, task, answers))
        try:
            if verdict.passed:
                after = advance(home, d.model, actor, reason=_figures(verdict), expected_step=d.step)
            else:
                after = abort(
                    home, d.model, actor, reason="; ".join(verdict.reasons), status="rolled_back", expected_step=d.step
                )
        except Conflict:
            continue  # a person moved it meanwhile; their step stands
        judged.append((after, verdict))
    return judged


def report(home: Home, store: PredictionStore, d: Deployment) -> dict:
    """What a deployment has shown so far: traffic per arm, and its strategy's comparison in the terms of
    the model's task (``analysis`` says which figures each task reports)."""
    body = {"deployment": msgspec.to_builtins(d), "predictions": store.predictions_by_arm(d.id)}
    if d.strategy == "blue-green" or (d.strategy == "canary" and d.status != "running"):
        return body  # nothing to compare: blue-green serves one version at a time; an ended canary has no step
    spec = home.spec(d.model)
    task = model_task(spec)
    if d.strategy == "canary":
        policy = spec.deployment
        step = [store.arm_count(d.id, arm, d.step_started_at) for arm in ("production", "candidate")]
        samples = [
            ArmSample.from_rows(store.arm_sample(d.id, arm, d.started_at, MAX_SAMPLE), task)
            for arm in ("production", "candidate")
        ]
        ready = min(step) >= policy.min_sample
        body["step"] = {
            "traffic_percent": d.traffic_percent,
            "min_sample": policy.min_sample,
            "sample": {"production": step[0], "candidate": step[1]},
            "judged_on": {"production": samples[0].n, "candidate": samples[1].n},
            "analysis": msgspec.to_builtins(
                judge_canary(samples[0], samples[1], policy, task, _evaluated(home, d, task, {}))
            )
            if ready
            else None,
        }
    elif d.strategy == "ab":
        body["ab"] = msgspec.to_builtins(
            ab_report_for(task, body["predictions"], store.outcomes_by_arm(d.id), spec.deployment.ab_min_outcomes)
        )
    else:
        body["shadow"] = msgspec.to_builtins(shadow_report(store.shadow_pairs(d.id), task))
    return body


def _evaluated(
    home: Home, d: Deployment, task: Task, answers: dict[tuple[str, int], list[float] | str]
) -> Evaluated | str:
    """Both versions' evaluation answers, which the canary's live answers are judged against; or why there
    are none (then the candidate's live answers are compared with production's)."""
    for version in (d.baseline_version, d.candidate_version):
        if (d.model, version) not in answers:
            answers[d.model, version] = _evaluation_answers(home, d.model, version, task)
    production, candidate = answers[d.model, d.baseline_version], answers[d.model, d.candidate_version]
    if isinstance(production, str) or isinstance(candidate, str):
        return "; ".join(why for why in (production, candidate) if isinstance(why, str))
    return Evaluated(production, candidate)


def _evaluation_answers(home: Home, model: str, version: int, task: Task) -> list[float] | str:
    """What a version answered on its held-out evaluation rows, as a canary arm's outputs are logged (binary
    P(class 1), multiclass the chosen class's index, regression the value); or why it cannot say."""
    if task.metric not in home.registry.version(model, version).metrics:
        return f"v{version} was evaluated as another task than the spec's {task.kind}"
    try:
        output = task_output(load_reference(home, model, version), task)
    except NotFound:
        return f"v{version} has no evaluation answers (registered before monitoring references were stored)"
    except pl.exceptions.ColumnNotFoundError:
        return f"v{version}'s evaluation answers are not {task.kind} answers of {len(task.classes)} classes"
    if task.kind == "multiclass":
        output = task.predicted_codes(output)
    return output.astype(float).tolist()


def _running(home: Home, model: str) -> Deployment:
    d = current(home, model)
    if d is None:
        raise NotFound(
            f"model '{model}' has no deployment running; start one with "
            f"`appliance deploy {model} start canary --version N`"
        )
    return d


def _move(home: Home, d: Deployment, actor: str, action: str, step: int, traffic: float, detail: dict) -> Deployment:
    with transaction(home.conn):
        moved = home.conn.execute(
            "UPDATE deployments SET step = ?, traffic_percent = ?, step_started_at = ? "
            "WHERE id = ? AND step = ? AND status = 'running'",
            (step, traffic, time.time(), d.id, d.step),
        ).rowcount
        if not moved:
            raise Conflict(f"the deployment of '{d.model}' moved on meanwhile; see `appliance deploy {d.model} status`")
        home.registry.audit(actor, action, d.model, d.candidate_version, {"deployment": d.id, "step": step, **detail})
    return _get(home.conn, d.id)


def _promote_and_finish(home: Home, d: Deployment, actor: str, reason: str) -> Deployment:
    if home.registry.alias(d.model, "production") != d.candidate_version:
        home.registry.promote(d.model, d.candidate_version, actor=actor, reason=f"{d.strategy}: {reason}")
    return _finish(home, d, "completed", actor, reason)


def _finish(home: Home, d: Deployment, status: str, actor: str, reason: str) -> Deployment:
    with transaction(home.conn):
        ended = home.conn.execute(
            "UPDATE deployments SET status = ?, ended_at = ?, reason = ?, traffic_percent = ? "
            "WHERE id = ? AND step = ? AND status = 'running'",
            (status, time.time(), reason, 100.0 if status == "completed" else 0.0, d.id, d.step),
        ).rowcount
        if not ended:
            raise Conflict(f"the deployment of '{d.model}' moved on meanwhile; see `appliance deploy {d.model} status`")
        home.registry.audit(
            actor,
            f"deployment_{status}",
            d.model,
            d.candidate_version,
            {"deployment": d.id, "strategy": d.strategy, "reason": reason},
        )
    return _get(home.conn, d.id)


def _get(conn: sqlite3.Connection, deployment_id: int) -> Deployment:
    return Deployment(**dict(conn.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,)).fetchone()))


def _figures(v: Verdict) -> str:
    f = v.figures
    return (
        f"analysis passed on {int(f['candidate_n'])}/{int(f['production_n'])} predictions: error rate "
        f"{f['candidate_error_rate']:.2%} vs {f['production_error_rate']:.2%}, p99 ratio {f['p99_ratio']:.2f}, "
        f"PSI {f['psi']:.3f} against {v.answers_against}"
    )
