"""What a running server knows, refreshed from the data directory every tick.

The CLI and the TUI change the data directory, not the server: each tick re-reads the API keys,
the running deployments and the production aliases, loads what is missing (candidates and
blue-green standbys stay warm), and swaps the routes in with one assignment. Under several serving
workers (``join``) each does the same, while canaries are judged once, by the supervisor, on every worker's traffic.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.data.declared import event_time_format, model_contract
from appliance.deployment import deployments
from appliance.errors import NotReady
from appliance.features.online import update_targets
from appliance.gateway.access import Caller, Gatekeeper
from appliance.gateway.keys import list_keys
from appliance.home import Home
from appliance.layout import Layout
from appliance.serving.batching import Arrivals, MicroBatcher
from appliance.serving.feedback import target_range
from appliance.serving.models import LoadedModel, ModelPool
from appliance.serving.prediction_log import PredictionLog, logged_fields
from appliance.serving.prometheus import Gauge, ServingMetrics, merge_gauges, provider_gauges
from appliance.serving.router import Arm, Route
from appliance.serving.shared import WorkerLink
from storage.prediction_log import PredictionStore


class ServingState:
    """The pool, the routes, the gateway, the prediction log and the metrics of one server."""

    def __init__(self, root: Path, exposed: bool):
        self.root = root
        self.pool = ModelPool()
        self.gate = Gatekeeper(exposed)
        self.metrics = ServingMetrics()
        self.arrivals = Arrivals()
        self.routes: dict[str, Route] = {}
        self.log: PredictionLog | None = None
        self._followed: dict[str, list] | None = None  # the update targets the log's writer was last given
        self._arms: dict[tuple[str, int], Arm] = {}
        self._store: PredictionStore | None = None
        self._store_lock = threading.Lock()
        self._refresh_lock = threading.RLock()  # the watcher and admin routes refresh from their own threads
        self.worker: WorkerLink | None = None  # this server's seat among serving workers (``join``)

    def join(self, worker: WorkerLink) -> None:
        """Serve as one of several workers: rate limits from the shared buckets, /metrics over every worker's
        counts, and no canary judged here (the supervisor judges them once). Before the server starts."""
        self.worker = worker
        self.gate.limiter = worker.buckets
        self.metrics.peers = lambda: worker.peers()
        previous = worker.left_behind()
        if previous is not None:  # a restart: counters carry on from where the seat's last worker left them
            self.metrics.absorb(previous["metrics"])

    def ready(self) -> bool:
        """Whether every model with a production version is loaded (what /readyz answers)."""
        return not self.pool.known() - self.pool.loaded().keys()

    def publish(self) -> None:
        """Hand this worker's counts to the others (from the event loop, which alone changes them)."""
        if self.worker is not None:
            self.worker.publish({"metrics": self.metrics.snapshot(), "gauges": self._gauges()})

    def open(self) -> None:
        """Start the prediction log and its writer (creating predictions.db if needed)."""
        layout = Layout(self.root)
        self.log = PredictionLog(layout.predictions_db, online=layout.online_db)
        self._store = PredictionStore(layout.predictions_db)

    def close(self) -> None:
        """Write every queued prediction, then stop."""
        if self.log is not None:
            self.log.close()
        if self._store is not None:
            self._store.close()

    def flush_log(self) -> None:
        """Write what the prediction log has queued (a prediction answered a moment ago is then readable)."""
        if self.log is not None:  # None only before the lifespan opened it
            self.log.flush()

    def admit(self, scope: Mapping[str, Any], which: str) -> Caller:
        """The caller of an HTTP request (ASGI scope) if it may use ``which`` routes; Unauthorized,
        Forbidden or RateLimited otherwise. The key comes from the raw headers; the rate-limit peer
        is the socket's, never a forwarded-for header. A browser's ``Origin`` naming another host than the
        request's ``Host`` is a page of another site (``Gatekeeper.admit``)."""
        bearer = key = None
        origin: bytes | None = None
        host = b""
        for header, value in scope["headers"]:  # raw ASGI headers: names are lower-case bytes
            if header == b"authorization":
                bearer = value.decode("latin-1")
            elif header == b"x-api-key":
                key = value.decode("latin-1")
            elif header == b"origin":  # kept as bytes: only a refusal decodes it
                origin = value
            elif header == b"host":
                host = value
        token = bearer[7:].strip() if bearer and bearer[:7].lower() == "bearer " else key
        client = scope.get("client")
        # "scheme://host[:port]" against "host[:port]"; a page with no origin of its own sends "null"
        other_site = None
        if origin is not None and origin.partition(b"://")[2].lower() != host.lower():
            other_site = origin.decode("latin-1")
        return self.gate.admit(which, token, client[0] if client else None, other_site)

    def route(self, name: str) -> Route:
        """The route of a served model; NotFound or NotReady (from the pool) otherwise."""
        route = self.routes.get(name)
        if route is None:
            self.pool.get(name)  # unknown, or known with nothing in production: the pool says which
            raise NotReady(f"model '{name}' is loading; try again in a second")
        return route

    def with_store(self, action):
        """Run ``action(store)`` on the server's reading connection to predictions.db (one thread at a time)."""
        with self._store_lock:
            return action(self._store)

    def tick(self, home: Home) -> None:
        """Judge canaries (unless a worker: the supervisor judges them), then re-read keys, deployments and
        aliases and swap in the new routes."""
        with self._refresh_lock:
            if self.worker is None:
                self.with_store(lambda store: deployments.analyze_canaries(home, store))
            self.refresh(home)

    def refresh(self, home: Home) -> None:
        """Re-read keys, deployments and aliases; load what is missing; swap in the new routes."""
        with self._refresh_lock:
            self._refresh(home)

    def _refresh(self, home: Home) -> None:
        self.gate.update_keys(list_keys(home.conn))
        running = {d.model: d for d in deployments.running(home.conn)}
        standby = frozenset(
            {(d.model, d.candidate_version) for d in running.values()}
            | {(d.model, d.baseline_version) for d in running.values() if d.switched}
        )
        self.pool.refresh(home, standby)
        routes, arms = {}, {}
        for name, production in self.pool.loaded().items():
            spec = home.spec(name)
            contract = model_contract(spec)
            arm = arms[(name, production.version)] = self._arm("production", production, spec.serving)
            d = running.get(name)
            candidate = None
            if d is not None and d.strategy != "blue-green":
                model = self.pool.warm(name, d.candidate_version)
                if model is not None and model is not production:
                    candidate = arms[(name, model.version)] = self._arm("candidate", model, spec.serving)
            versions = [production] if candidate is None else [production, candidate.model]
            served = [m.features.features for m in versions if m.features is not None]
            routes[name] = Route(
                arm,
                d,
                candidate,
                split_field=d.split_key if d else None,
                entity_field=spec.features.entity_key,
                event_time_field=spec.features.event_time,
                horizon=spec.data.horizon,
                time_format=event_time_format(spec, contract),
                target=target_range(spec, contract),
                logged=logged_fields([spec.features, *served]),
            )
        self._arms = arms
        self.routes = routes
        if self.log is not None:
            targets = self._online_targets(home, standby)
            if targets != self._followed:
                self.log.follow(targets)
                self._followed = targets

    def _online_targets(self, home: Home, standby: frozenset[tuple[str, int]]) -> dict[str, list]:
        # The namespaces each model's answered requests update: its spec's and every loaded version's.
        found: dict[str, list] = {}
        loaded = {(name, m.version) for name, m in self.pool.loaded().items()}
        for name, version in sorted(loaded | standby):
            spec = home.spec(name)
            if not spec.features.update_online:
                continue
            definitions = found.setdefault(name, [spec.features])
            model = self.pool.warm(name, version)
            if model is not None and model.features is not None:
                definitions.append(model.features.features)
        return {name: update_targets(name, definitions) for name, definitions in found.items()}

    def _arm(self, name: str, model: LoadedModel, serving) -> Arm:
        known = self._arms.get((model.name, model.version))
        if (
            known is not None
            and known.model is model
            and known.batcher.max_batch == model.max_batch(serving)
            and known.batcher.max_wait_s == serving.max_wait_ms / 1000
        ):
            return known if known.name == name else Arm(name, model, known.batcher)
        batcher = MicroBatcher(
            model.encode,
            model.run,
            model.max_batch(serving),
            serving.max_wait_ms / 1000,
            self.arrivals,
            self.metrics.observe_batch,
        )
        return Arm(name, model, batcher)

    def gauges(self) -> list[Gauge]:
        """Gauges and counters owned by other parts, for /metrics: under workers, every worker's as one."""
        worker = self.worker
        if worker is None:
            return [*self._gauges(), _workers_gauge(1)]
        merged = merge_gauges([self._gauges(), *(peer["gauges"] for peer in worker.peers())])
        return [*merged, _workers_gauge(worker.beating())]

    def _gauges(self) -> list[Gauge]:
        out: list[Gauge] = []
        log = self.log
        if log is not None:
            out += [
                (
                    "appliance_prediction_log_queue_depth",
                    "gauge",
                    "Prediction rows waiting to be written.",
                    {},
                    log.depth,
                ),
                (
                    "appliance_prediction_log_queue_capacity",
                    "gauge",
                    "Capacity of the prediction log queue.",
                    {},
                    log.capacity,
                ),
                (
                    "appliance_prediction_log_overflow_total",
                    "counter",
                    "Prediction rows not logged because the queue was full.",
                    {},
                    log.overflow,
                ),
                (
                    "appliance_prediction_log_write_errors_total",
                    "counter",
                    "Prediction rows lost to write errors.",
                    {},
                    log.write_errors,
                ),
                ("appliance_prediction_log_written_total", "counter", "Prediction rows written.", {}, log.written),
                (
                    "appliance_prediction_log_waits_total",
                    "counter",
                    "Requests that waited for the prediction log's writer to catch up (backpressure).",
                    {},
                    self.metrics.log_waits,
                ),
                (
                    "appliance_prediction_log_undeclared_fields_total",
                    "counter",
                    "Request fields not logged because the model's spec does not declare them.",
                    {},
                    self.metrics.undeclared_fields,
                ),
                (
                    "appliance_prediction_log_writer_restarts_total",
                    "counter",
                    "Times the prediction log's writer process died and was started again.",
                    {},
                    log.writer_restarts,
                ),
                (
                    "appliance_online_rows_updated_total",
                    "counter",
                    "Online feature rows moved forward by answered requests.",
                    {},
                    log.online_updated,
                ),
                (
                    "appliance_online_stale_events_total",
                    "counter",
                    "Answered requests not applied: their entity's row predates tails (materialize again).",
                    {},
                    log.online_stale,
                ),
                (
                    "appliance_online_future_events_total",
                    "counter",
                    "Answered requests not applied: their event time is past the server's clock (check client clocks).",
                    {},
                    log.online_future,
                ),
                (
                    "appliance_online_update_errors_total",
                    "counter",
                    "Answered requests lost to failed online store updates.",
                    {},
                    log.online_errors,
                ),
            ]
        for reason, n in self.gate.rejected.items():
            out.append(
                (
                    "appliance_gateway_rejected_total",
                    "counter",
                    "Requests the gateway refused, by reason.",
                    {"reason": reason},
                    n,
                )
            )
        for status, n in sorted(self.metrics.refused_heads.items()):
            out.append(
                (
                    "appliance_http_refused_total",
                    "counter",
                    "Requests refused before the app read them: 408 a head not whole in time, 431 a head too large.",
                    {"status": str(status)},
                    n,
                )
            )
        out.append(
            (
                "appliance_shadow_dropped_total",
                "counter",
                "Shadow scorings skipped because too many were in flight.",
                {},
                self.metrics.shadow_dropped,
            )
        )
        out += provider_gauges(self.pool.versions())
        for name, route in sorted(self.routes.items()):
            out.append(
                (
                    "appliance_model_serving",
                    "gauge",
                    "The version serving production, per model.",
                    {"model": name, "version": str(route.production.model.version)},
                    1,
                )
            )
            d = route.deployment
            if d is not None:
                out.append(
                    (
                        "appliance_deployment_traffic_percent",
                        "gauge",
                        "Share of requests a running deployment's candidate answers.",
                        {"model": name, "strategy": d.strategy, "version": str(d.candidate_version)},
                        d.traffic_percent,
                    )
                )
        return out


def _workers_gauge(count: int) -> Gauge:
    return (
        "appliance_serving_workers",
        "gauge",
        "Serving worker processes answering on the port (beating within the last seconds; 1 without workers).",
        {},
        count,
    )
