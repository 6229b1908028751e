"""Serving metrics and their Prometheus text exposition (format 0.0.4), written by hand: a few
counters and two histograms do not justify a client library."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class ServingMetrics:
    """What the request path counts; the label sets are bounded by models × versions × arms × statuses."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.shadow_dropped = 0
        self.refused_heads: dict[int, int] = {}  # by status: requests the HTTP protocol refused (serving.server)
        self.log_waits = 0          # requests that waited for the prediction log's writer (backpressure)

    def observe_request(self, model: str, version: int | str, arm: str, status: int, seconds: float) -> None:
        key = (model, str(version), arm, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(model)
        if histogram is None:
            histogram = self.latency[model] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(seconds)

    def observe_refused_head(self, status: int) -> None:
        self.refused_heads[status] = self.refused_heads.get(status, 0) + 1

    def observe_batch(self, rows: int) -> None:
        self.batch_sizes.observe(rows)

    def render(self, gauges: list[tuple[str, str, str, dict[str, str], float]]) -> str:
        """The exposition text; gauges are (name, type, help, labels, value) from other parts."""
        out = ["# HELP appliance_requests_total Prediction requests by model, version, arm and status.",
               "# TYPE appliance_requests_total counter"]
        for (model, version, arm, status), n in sorted(self.requests.items()):
            out.append(f"appliance_requests_total{{{_labels(model=model, version=version, arm=arm, status=str(status))}}} {n}")
        out += ["# HELP appliance_request_latency_seconds Prediction request latency in the server.",
                "# TYPE appliance_request_latency_seconds histogram"]
        for model, histogram in sorted(self.latency.items()):
            out.extend(histogram.lines("appliance_request_latency_seconds", _labels(model=model)))
        out += ["# HELP appliance_batch_rows Rows per ONNX Runtime call of coalesced single-row requests.",
                "# TYPE appliance_batch_rows histogram", *self.batch_sizes.lines("appliance_batch_rows", "")]
        seen = set()
        for name, kind, help_text, labels, value in gauges:
            if name not in seen:
                seen.add(name)
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            braces = f"{{{_labels(**labels)}}}" if labels else ""
            out.append(f"{name}{braces} {value:g}")
        return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
