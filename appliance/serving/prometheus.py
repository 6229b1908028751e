"""Serving metrics and their Prometheus text exposition (format 0.0.4), written by hand: a few
counters and two histograms do not justify a client library.

What the models answered follows each one's task: a multiclass model's answers are counted per class
(its declared classes bound the labels), a regression model's values summed and counted. A binary
model's answers are not counted here (its hot path does nothing per row beyond answering and logging);
monitoring reads every task's answers from the prediction log.

Under several serving workers (``serving.workers``) each worker publishes what it counted (``snapshot``)
and the one answering /metrics adds the others' in (``peers``, ``merge_gauges``): one view, whichever
worker a scrape reaches."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.serving.models import LoadedModel

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The exposition's media type. Litestar adds "; charset=utf-8" to any text/ type it answers with: said here
# too, the header would carry it twice, which a strict scraper refuses.
CONTENT_TYPE = "text/plain; version=0.0.4"
# Gauges of what each worker holds for itself add up across workers; every other gauge states something all
# workers share (the version serving, its provider, a deployment's share) and is shown once, at its highest.
ADDED_GAUGES = frozenset({"appliance_prediction_log_queue_depth", "appliance_prediction_log_queue_capacity"})

Gauge = tuple[str, str, str, dict[str, str], float]  # (name, type, help, labels, value)


class Histogram:
    """Counts per bucket (not cumulative until rendered), a sum and a count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        running = 0
        sep = "," if labels else ""
        for bound, n in zip((*self.bounds, "+Inf"), self.counts):
            running += n
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.sum:.6f}"
        yield f"{name}_count{braces} {self.count}"

    def add(self, counts: list[int], total: float, count: int) -> None:
        """Add another histogram's buckets (same bounds), sum and count."""
        self.counts = [a + b for a, b in zip(self.counts, counts)]
        self.sum += total
        self.count += count


class ServingMetrics:
    """What the request path counts; the label sets are bounded by models × versions × arms × statuses."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.shadow_dropped = 0
        self.refused_heads: dict[int, int] = {}  # by status: requests the HTTP protocol refused (serving.server)
        self.log_waits = 0  # requests that waited for the prediction log's writer (backpressure)
        self.undeclared_fields = 0  # request fields not logged: the spec does not declare them (prediction_log)
        self.predicted_classes: dict[tuple[str, str], int] = {}  # (model, class): multiclass answers
        self.predicted_values: dict[str, list[float]] = {}  # model: [sum, count] of regression values
        self.peers: Callable[[], list[dict[str, Any]]] | None = None  # other workers' snapshots, under workers

    def observe_request(self, model: str, version: int | str, arm: str, status: int, seconds: float) -> None:
        key = (model, str(version), arm, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(model)
        if histogram is None:
            histogram = self.latency[model] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(seconds)

    def observe_outputs(self, model: LoadedModel, columns: list[tuple]) -> None:
        """Count a multiclass or regression model's answered rows: ``columns`` as the prediction log's
        (probability, label, value, probabilities) per row."""
        if model.task.kind == "multiclass":
            texts = model.class_texts
            for _, label, _, _ in columns:
                key = (model.name, texts[label])
                self.predicted_classes[key] = self.predicted_classes.get(key, 0) + 1
        elif model.task.kind == "regression":
            summed = self.predicted_values.setdefault(model.name, [0.0, 0])
            for _, _, value, _ in columns:
                summed[0] += value
                summed[1] += 1

    def observe_refused_head(self, status: int) -> None:
        self.refused_heads[status] = self.refused_heads.get(status, 0) + 1

    def observe_batch(self, rows: int) -> None:
        self.batch_sizes.observe(rows)

    def snapshot(self) -> dict[str, Any]:
        """What this process counted, as plain data another worker can add in (``absorb``)."""
        return {
            "requests": dict(self.requests),
            "latency": {m: (list(h.counts), h.sum, h.count) for m, h in self.latency.items()},
            "batch_sizes": (list(self.batch_sizes.counts), self.batch_sizes.sum, self.batch_sizes.count),
            "shadow_dropped": self.shadow_dropped,
            "refused_heads": dict(self.refused_heads),
            "log_waits": self.log_waits,
            "undeclared_fields": self.undeclared_fields,
            "predicted_classes": dict(self.predicted_classes),
            "predicted_values": {m: list(v) for m, v in self.predicted_values.items()},
        }

    def absorb(self, snapshot: dict[str, Any]) -> None:
        """Add another worker's counts: counters add, histograms add bucket by bucket."""
        for table in ("requests", "refused_heads", "predicted_classes"):
            mine = getattr(self, table)
            for key, n in snapshot[table].items():
                mine[key] = mine.get(key, 0) + n
        for model, counted in snapshot["latency"].items():
            histogram = self.latency.get(model)
            if histogram is None:
                histogram = self.latency[model] = Histogram(LATENCY_BUCKETS_S)
            histogram.add(*counted)
        self.batch_sizes.add(*snapshot["batch_sizes"])
        self.shadow_dropped += snapshot["shadow_dropped"]
        self.log_waits += snapshot["log_waits"]
        self.undeclared_fields += snapshot["undeclared_fields"]
        for model, (summed_values, count) in snapshot["predicted_values"].items():
            summed = self.predicted_values.setdefault(model, [0.0, 0])
            summed[0] += summed_values
            summed[1] += count

    def render(self, gauges: list[Gauge]) -> str:
        """The exposition text; gauges are (name, type, help, labels, value) from other parts. Under workers,
        the counts of every worker (gauges: the caller's to merge, ``merge_gauges``)."""
        if self.peers is not None:
            every = ServingMetrics()
            for snapshot in [self.snapshot(), *(peer["metrics"] for peer in self.peers())]:
                every.absorb(snapshot)
            return every.render(gauges)
        out = [
            "# HELP appliance_requests_total Prediction requests by model, version, arm and status.",
            "# TYPE appliance_requests_total counter",
        ]
        for (model, version, arm, status), n in sorted(self.requests.items()):
            labels = _labels(model=model, version=version, arm=arm, status=str(status))
            out.append(f"appliance_requests_total{{{labels}}} {n}")
        out += [
            "# HELP appliance_request_latency_seconds Prediction request latency in the server.",
            "# TYPE appliance_request_latency_seconds histogram",
        ]
        for model, histogram in sorted(self.latency.items()):
            out.extend(histogram.lines("appliance_request_latency_seconds", _labels(model=model)))
        out += [
            "# HELP appliance_batch_rows Rows per ONNX Runtime call of coalesced single-row requests.",
            "# TYPE appliance_batch_rows histogram",
            *self.batch_sizes.lines("appliance_batch_rows", ""),
        ]
        if self.predicted_classes:
            out += [
                "# HELP appliance_predicted_class_total Multiclass answers by model and the class answered.",
                "# TYPE appliance_predicted_class_total counter",
            ]
            for (model, label), n in sorted(self.predicted_classes.items()):
                class_labels = _labels(**{"model": model, "class": label})  # 'class' is a keyword in Python
                out.append(f"appliance_predicted_class_total{{{class_labels}}} {n}")
        if self.predicted_values:
            out += [
                "# HELP appliance_predicted_value Regression answers: the sum and count of the values answered.",
                "# TYPE appliance_predicted_value summary",
            ]
            for model, (total, count) in sorted(self.predicted_values.items()):
                out += [
                    f"appliance_predicted_value_sum{{{_labels(model=model)}}} {total!r}",
                    f"appliance_predicted_value_count{{{_labels(model=model)}}} {count}",
                ]
        seen = set()
        for name, kind, help_text, gauge_labels, value in gauges:
            if name not in seen:
                seen.add(name)
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            braces = f"{{{_labels(**gauge_labels)}}}" if gauge_labels else ""
            out.append(f"{name}{braces} {value:g}")
        return "\n".join(out) + "\n"


def merge_gauges(per_worker: list[list[Gauge]]) -> list[Gauge]:
    """Workers' gauges as one: counters add, ``ADDED_GAUGES`` add, any other gauge at its highest; each name's
    lines kept together (the exposition format wants a family in one piece), in the order first seen."""
    families: dict[str, dict[tuple, Gauge]] = {}
    for gauges in per_worker:
        for name, kind, help_text, labels, value in gauges:
            family = families.setdefault(name, {})
            key = tuple(sorted(labels.items()))
            known = family.get(key)
            if known is not None:
                added = kind == "counter" or name in ADDED_GAUGES
                value = known[4] + value if added else max(known[4], value)
            family[key] = (name, kind, help_text, labels, value)
    return [gauge for family in families.values() for gauge in family.values()]


def provider_gauges(models: Iterable[LoadedModel]) -> list[Gauge]:
    """An info gauge per loaded version (production and standbys): the ONNX Runtime provider serving it, so
    a fallback to the CPU where CUDA was asked for shows on a dashboard, not only in the log."""
    return [
        (
            "appliance_model_provider_info",
            "gauge",
            "The ONNX Runtime provider serving each loaded version (1 per version).",
            {"model": m.name, "version": str(m.version), "provider": m.provider},
            1,
        )
        for m in models
    ]


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
