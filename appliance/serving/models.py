"""Models loaded for serving, and the pool that swaps them when the production alias moves."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property

import msgspec
import numpy as np
import onnxruntime as ort

from appliance.data.declared import model_task
from appliance.errors import Conflict, NotFound, NotReady
from appliance.features.encoding import FeatureSchema, RecordEncoder
from appliance.features.online import OnlineFeatures
from appliance.home import Home
from appliance.registry import ModelVersion
from appliance.scoring import onnx_model
from appliance.spec import ServingSection
from appliance.task import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One model version ready to answer: its ONNX Runtime session, the provider that serves it, its record
    encoder and its task."""

    name: str
    version: int
    session: ort.InferenceSession
    encoder: RecordEncoder
    task: Task  # what its output is: a probability, class probabilities or a value
    max_batch_rows: int
    features: OnlineFeatures | None = None  # its entity key, event time, stored and derived features
    provider: str = onnx_model.CPU  # the ONNX Runtime provider that serves it: session.get_providers()[0]

    def max_batch(self, serving: ServingSection) -> int:
        """Rows per ONNX Runtime call at most, for the spec's serving section as it is now: on the GPU a
        batch of a few hundred rows costs about what one row does, so its ceiling is higher."""
        return serving.gpu_max_batch if self.provider == onnx_model.CUDA else serving.max_batch

    @property
    def threshold(self) -> float:
        """A binary model's label threshold."""
        return self.task.threshold

    @cached_property
    def class_texts(self) -> tuple[str, ...]:
        """A classifier's classes as canonical text, in output order: the keys of its answers' probabilities."""
        return tuple(self.task.class_text())

    def encode(self, records: list) -> np.ndarray:
        """Validate request records, complete them from the online store, and turn them into the
        model's float32 input rows."""
        if self.features is not None:
            records = self.features.complete(records)  # which checks each entity key and event time
        return self.encoder.encode(records)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The task's output for encoded rows (any number of them, in one ONNX Runtime call): the probability
        of class 1 [n], every class's probability [n, k], or the value [n] (``appliance.task``)."""
        return onnx_model.predict(self.session, x, self.task, self.provider == onnx_model.CUDA)

    def predict(self, records: list) -> np.ndarray:
        """The task's output for request records: encode, then run."""
        return self.run(self.encode(records))


def load_version(home: Home, model: str, version: int) -> LoadedModel:
    """Load a version from the artifact store (hash-verified) on the provider its spec's ``[serving] provider``
    gives it (one warning when CUDA was asked for and the CPU serves) and warm its session with one row,
    refusing (Conflict) a version whose output does not fit its spec's task."""
    spec = home.spec(model)
    task = model_task(spec)
    mv: ModelVersion = home.registry.version(model, version)
    session, fallback = onnx_model.serving_session(home.artifacts.get(mv.artifact_sha256), spec.serving.provider)
    if fallback is not None:
        log.warning(
            "%s v%s: serving on the CPU, not CUDA as [serving] provider = %r asks: %s",
            model,
            version,
            spec.serving.provider,
            fallback,
        )
    schema = msgspec.convert(mv.feature_schema, FeatureSchema)
    definitions = schema.definitions
    # Every version that records its definitions completes requests through them, so the entity key and
    # the event time are checked (and logged, and later trained on) as declared, stored features or not.
    features = (
        None
        if definitions is None
        else OnlineFeatures(home.online, model, definitions, schema.key_type, schema.key_nullable)
    )
    _warm(session, task, len(schema.columns), f"{model} v{version}")
    provider = session.get_providers()[0]
    return LoadedModel(
        model, version, session, RecordEncoder(schema), task, spec.serving.max_batch_rows, features, provider
    )


def provider_line(home: Home, model: str, version: int | None) -> str:
    """Which ONNX Runtime provider the production version loads on, on this machine, as ``load_version``
    chooses it (a running server's own answer is in /metrics and GET /v1/models); and why the CPU serves
    where CUDA was asked for."""
    if version is None:
        return "provider: no production version to load"
    setting = home.spec(model).serving.provider
    mv = home.registry.version(model, version)
    session, fallback = onnx_model.serving_session(home.artifacts.get(mv.artifact_sha256), setting)
    line = (
        f'provider: production v{version} loads on {session.get_providers()[0]} here ([serving] provider = "{setting}")'
    )
    return line + (f"; not on CUDA: {fallback}" if fallback else "")


def _warm(session: ort.InferenceSession, task: Task, width: int, which: str) -> None:
    """Score one row, and refuse a version whose output is not what its task reads: the spec's task or
    classes may have changed since it was trained, and it would answer in the wrong terms."""
    wanted = onnx_model.VALUE if task.kind == "regression" else onnx_model.PROBABILITIES
    outputs = [o.name for o in session.get_outputs()]
    if wanted not in outputs:
        raise Conflict(
            f"cannot serve {which} as a {task.kind} model: its ONNX has no output '{wanted}' (it has "
            f"{', '.join(outputs)}); it was trained for another task than the spec's [target] task says"
        )
    shape = session.run([wanted], {onnx_model.INPUT_NAME: np.zeros((1, width), dtype=np.float32)})[0].shape
    if task.kind == "regression":
        if shape not in ((1,), (1, 1)):
            raise Conflict(
                f"cannot serve {which} as a regression model: its output '{wanted}' is {list(shape)} "
                "for one row, not one value"
            )
        return
    k = len(task.classes)
    if shape != (1, k):
        had = f"{shape[1]} class probabilities" if len(shape) == 2 and shape[0] == 1 else f"shape {list(shape)}"
        raise Conflict(
            f"cannot serve {which} as a {task.kind} model of {k} classes "
            f"({', '.join(map(str, task.classes))}): its output '{wanted}' has {had} per row; "
            "the spec's [target] task or classes changed since it was trained: retrain it, "
            "or restore the spec it was trained with"
        )


def load_production(home: Home, model: str) -> LoadedModel:
    """The model's production version, loaded; NotReady if it has none yet."""
    version = home.registry.alias(home.registry.model(model).name, "production")
    if version is None:
        raise NotReady(
            f"model '{model}' has no production version yet; train one with `appliance train {model}` and promote it"
        )
    return load_version(home, model, version)


class ModelPool:
    """The production model of every registered model, plus warm standbys; readers never wait on a swap.

    A standby (a deployment's candidate, or a blue-green deployment's previous production) stays
    loaded, so moving production onto it — or back — swaps without loading anything.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, LoadedModel] = {}
        self._warm: dict[tuple[str, int], LoadedModel] = {}
        self._known: set[str] = set()
        self._failed: set[tuple[str, int]] = set()
        self._refresh_lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The loaded production model for a name; NotFound or NotReady otherwise."""
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        if name in self._known:
            raise NotReady(
                f"model '{name}' has no production version loaded yet; train and promote "
                f"one with `appliance train {name}`"
            )
        known = ", ".join(sorted(self._known)) or "none"
        raise NotFound(f"unknown model '{name}' (known: {known})")

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._loaded)

    def known(self) -> set[str]:
        return set(self._known)

    def knows(self, name: str) -> bool:
        """Whether a model of this name is registered (loaded or not)."""
        return name in self._known

    def warm(self, name: str, version: int) -> LoadedModel | None:
        """A loaded version (production or standby), or None if it is not loaded."""
        return self._warm.get((name, version))

    def versions(self) -> list[LoadedModel]:
        """Every loaded version, production and standbys, by model and version."""
        return [self._warm[key] for key in sorted(self._warm)]

    def refresh(self, home: Home, standby: frozenset[tuple[str, int]] = frozenset()) -> list[tuple[str, int]]:
        """Load every production version that changed and every standby asked for; returns the
        (model, version) pairs swapped into production."""
        with self._refresh_lock:
            self._known = {m.name for m in home.registry.models()}
            production = home.registry.production_versions()
            warm = {}
            for key in {*production.items(), *standby}:
                loaded = self._warm.get(key)
                if loaded is None and key not in self._failed:
                    try:
                        loaded = load_version(home, *key)
                    except Exception as e:  # a corrupt artifact or bad spec must not take serving down
                        self._failed.add(key)
                        current = self._loaded.get(key[0])
                        log.error(
                            "could not load %s v%s, still serving %s: %s",
                            *key,
                            f"v{current.version}" if current else "nothing",
                            e,
                        )
                if loaded is not None:
                    warm[key] = loaded
            swapped = []
            serving = dict(self._loaded)
            for name, version in production.items():
                current = serving.get(name)
                if (name, version) in warm and not (current and current.version == version):
                    serving[name] = warm[(name, version)]
                    swapped.append((name, version))
                    log.info("now serving %s v%s", name, version)
            for name, current in serving.items():
                warm.setdefault((name, current.version), current)
            # One assignment each: requests in flight keep the model object they already hold.
            self._warm = warm
            self._loaded = serving
            return swapped
