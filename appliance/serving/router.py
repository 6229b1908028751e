"""Which loaded version answers a request: production, or a deployment's candidate.

A canary or A/B split is sticky: the request's key field (the entity key, or the A/B key) is
hashed with the deployment id into a bucket in [0, 100); buckets below the candidate's share go
to the candidate, so raising the share only moves keys from production to the candidate, never
back. A request without the key is split by its request id (not sticky).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from appliance.data.values import key_text
from appliance.deployment.deployments import Deployment
from appliance.serving.batching import MicroBatcher
from appliance.serving.feedback import UNBOUNDED, TargetRange
from appliance.serving.models import LoadedModel
from appliance.spec import EventHorizon


@dataclass(frozen=True)
class Arm:
    """One loaded version as a route target: its model, its micro-batcher, and its name in the log."""

    name: str  # production | candidate
    model: LoadedModel
    batcher: MicroBatcher


@dataclass(frozen=True)
class Route:
    """How one model's requests are answered right now."""

    production: Arm
    deployment: Deployment | None = None
    candidate: Arm | None = None
    split_field: str | None = None
    entity_field: str | None = None
    event_time_field: str | None = None
    horizon: EventHorizon | None = None  # the event times the model takes, around the clock
    time_format: str | None = None  # the event time's text format its contract declares (ISO 8601 reads too)
    target: TargetRange = UNBOUNDED  # a regression target's contract min and max: feedback outside them is a 422
    logged: frozenset[str] = frozenset()  # the request fields its prediction rows keep (prediction_log)

    @property
    def deployment_id(self) -> int | None:
        return self.deployment.id if self.deployment else None

    @property
    def shadow(self) -> Arm | None:
        """The arm that scores every request off the response path, if a shadow deployment runs."""
        return self.candidate if self.deployment and self.deployment.strategy == "shadow" else None

    def choose(self, record: object, request_id: str) -> Arm:
        """The arm that answers a request whose (first) record is ``record``."""
        d = self.deployment
        if self.candidate is None or d is None or d.strategy not in ("canary", "ab"):
            return self.production
        key = record.get(self.split_field) if type(record) is dict else None
        if key is None:
            key = request_id
        return self.candidate if bucket(key_text(key), d.id) < d.traffic_percent else self.production


def bucket(key: str, salt: int) -> float:
    """A stable, uniform position of a key in [0, 100), different for each deployment."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, salt=salt.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") % 10_000 / 100
