"""Small data sets for the tasks beside binary, each with its spec and contract, written to a folder.

``deliveries`` is a regression: minutes a delivery takes, skewed, from string courier keys with an
entity file, text zones and a 0/1 rush flag. ``tickets`` is a multiclass model: which team a support
ticket goes to, text classes declared only in the contract's allowed values, no entity, a CSV with text
timestamps. Neither resembles the bundled sample or the binary sets in ``own_data``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from own_data import TEXT_TIME, write_data_set

DELIVERIES_SPEC = """[model]
name = "{name}"
description = "Minutes from order to door."

[data]
source = "history.parquet"
contract = "contract.toml"
entities = "couriers.parquet"
live = "live.parquet"
event_time_past = "3650d"   # generated days of 2026: still replayable years later

[features]
entity_key = "courier"
event_time = "ordered_at"
request = [
    {{ name = "distance_km", type = "float" }},
    {{ name = "zone", type = "category" }},
    {{ name = "rush", type = "boolean" }},
    {{ name = "items", type = "integer" }},
]
entity_attributes = [{{ name = "vehicle", type = "category" }}]
aggregations = [{{ name = "orders_1d", function = "count", window = "1d" }}]

[target]
column = "minutes"
task = "regression"

[training]
eval_days = 3
seed = 5
trainer = "{trainer}"

[training.params]
{params}

[deployment]
canary_steps = [50, 100]
min_sample = 60
max_p99_latency_ratio = 100.0   # the suite shares the machine: latency is not what these canaries test

[validation]
max_p99_ms = 1000.0
segments = ["zone"]
max_segment_gap = 0.5     # RMSE of the worst zone at most 50 % above the best
"""

DELIVERIES_CONTRACT = """[contract]
name = "deliveries"
version = "1"
event_time = "ordered_at"

[[fields]]
name = "ordered_at"
type = "timestamp"
nullable = false

[[fields]]
name = "courier"
type = "string"
nullable = false

[[fields]]
name = "distance_km"
type = "float"
min = 0.0

[[fields]]
name = "zone"
type = "string"
allowed_values = ["north", "centre", "harbour", "hills"]

[[fields]]
name = "rush"
type = "integer"
allowed_values = [0, 1]

[[fields]]
name = "items"
type = "integer"
min = 1

[[fields]]
name = "minutes"
type = "float"
min = 0.0
"""

LIGHTGBM_PARAMS = "num_boost_round = 60\nlearning_rate = 0.1\nnum_leaves = 15\nmin_child_samples = 20"
MLP_PARAMS = "epochs = 8\nbatch_size = 256\nlearning_rate = 0.01\nhidden = 32"

ZONES = ["north", "centre", "harbour", "hills"]
TEAMS = ["billing", "tech", "sales", "abuse"]


def write_deliveries(
    folder: Path,
    name: str = "eta",
    days: int = 14,
    live_days: int = 3,
    per_day: int = 400,
    seed: int = 0,
    trainer: str = "lightgbm",
    live_slower: float = 1.0,
) -> Path:
    """A skewed regression target with string keys; ``live_slower`` multiplies the live days' minutes (the
    model's error grows without its inputs moving). Returns the spec's path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    couriers = [f"c-{i:03d}" for i in range(60)]
    vehicles = rng.choice(["bike", "scooter", "van"], len(couriers))
    pl.DataFrame({"courier": couriers, "vehicle": vehicles}).write_parquet(folder / "couriers.parquet")
    n = (days + live_days) * per_day
    start = datetime(2026, 5, 4)
    seconds = np.sort(rng.integers(0, (days + live_days) * 86400, n))
    who = rng.integers(0, len(couriers), n)
    distance = rng.gamma(2.0, 2.0, n).round(2)
    zone = rng.integers(0, len(ZONES), n)
    rush = rng.integers(0, 2, n)
    items = rng.integers(1, 8, n)
    speed = np.select([vehicles[who] == "bike", vehicles[who] == "scooter"], [0.25, 0.4], 0.5)  # km a minute
    minutes = (8 + distance / speed + 6 * rush + 4 * (zone == 3) + 1.5 * items) * rng.lognormal(0, 0.15, n)
    live = seconds >= days * 86400
    minutes = np.where(live, minutes * live_slower, minutes).round(1)
    frame = pl.DataFrame(
        {
            "ordered_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "courier": [couriers[i] for i in who],
            "distance_km": distance,
            "zone": [ZONES[z] for z in zone],
            "rush": rush,
            "items": items,
            "minutes": minutes,
        }
    )
    spec = DELIVERIES_SPEC.format(
        name=name, trainer=trainer, params=LIGHTGBM_PARAMS if trainer == "lightgbm" else MLP_PARAMS
    )
    return write_data_set(folder, name, spec, DELIVERIES_CONTRACT, frame, start + timedelta(days=days))


TICKETS_SPEC = """[model]
name = "{name}"
description = "Which team should answer this support ticket?"

[data]
source = "tickets.csv"
contract = "contract.toml"
live = "live.csv"
event_time_past = "3650d"   # generated days of 2026: still replayable years later

[features]
event_time = "opened"
request = [
    {{ name = "words", type = "float" }},
    {{ name = "channel", type = "category" }},
    {{ name = "attachment", type = "boolean" }},
    {{ name = "hour", type = "integer" }},
]

[target]
column = "team"
task = "multiclass"

[training]
eval_days = 3
seed = 9
trainer = "{trainer}"

[training.params]
{params}

[deployment]
canary_steps = [50, 100]
min_sample = 60
max_p99_latency_ratio = 100.0

[validation]
max_p99_ms = 1000.0
"""

TICKETS_CONTRACT = """[contract]
name = "tickets"
version = "1"
event_time = "opened"

[[fields]]
name = "ticket"
type = "integer"
nullable = false
unique = true

[[fields]]
name = "opened"
type = "timestamp"
nullable = false

[[fields]]
name = "words"
type = "float"
min = 0.0

[[fields]]
name = "channel"
type = "integer"
allowed_values = [10, 20, 30]

[[fields]]
name = "attachment"
type = "boolean"

[[fields]]
name = "hour"
type = "integer"
min = 0
max = 23

[[fields]]
name = "team"
type = "string"
allowed_values = ["billing", "tech", "sales", "abuse"]
"""


def write_tickets(
    folder: Path,
    name: str = "triage",
    days: int = 14,
    live_days: int = 3,
    per_day: int = 400,
    seed: int = 0,
    trainer: str = "lightgbm",
    live_swapped: bool = False,
) -> Path:
    """Four text classes declared in the contract alone; integer channel codes; text times and booleans in a
    CSV. ``live_swapped``: in the live days, tickets that went to billing go to tech and the reverse."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = (days + live_days) * per_day
    start = datetime(2026, 7, 1)
    seconds = np.sort(rng.integers(0, (days + live_days) * 86400, n))
    words = rng.gamma(2.0, 40.0, n).round(0)
    channel = rng.choice([10, 20, 30], n)
    attachment = rng.random(n) < 0.3
    hour = ((seconds % 86400) // 3600).astype(np.int64)
    logits = (
        np.stack(
            [
                0.8 * attachment + 0.6 * (channel == 10) - 0.004 * words,  # billing: invoices attached, email
                0.01 * words - 0.5 + 0.5 * (channel == 20),  # tech: long tickets, chat
                1.2 * ((hour >= 9) & (hour < 17)) - 0.8 + 0.7 * (channel == 30),  # sales: office hours, phone
                -1.0 + 1.5 * (hour < 5),  # abuse: at night
            ],
            axis=1,
        )
        * 2.0
    )
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    team = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    if live_swapped:
        live = seconds >= days * 86400
        team = np.where(live & (team == 0), 1, np.where(live & (team == 1), 0, team))
    opened = [(start + timedelta(seconds=int(s))).strftime(TEXT_TIME) for s in seconds]
    frame = pl.DataFrame(
        {
            "ticket": np.arange(1, n + 1),
            "opened": opened,
            "words": words,
            "channel": channel,
            "attachment": ["true" if a else "false" for a in attachment],
            "hour": hour,
            "team": [TEAMS[t] for t in team],
        }
    )
    spec = TICKETS_SPEC.format(
        name=name, trainer=trainer, params=LIGHTGBM_PARAMS if trainer == "lightgbm" else MLP_PARAMS
    )
    return write_data_set(folder, name, spec, TICKETS_CONTRACT, frame, start + timedelta(days=days))
