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
from own_data import TEXT_TIME, spec_text, write_data_set

LIGHTGBM_PARAMS = "num_boost_round = 60\nlearning_rate = 0.1\nnum_leaves = 15\nmin_child_samples = 20"
MLP_PARAMS = "epochs = 8\nbatch_size = 256\nlearning_rate = 0.01\nhidden = 32"

ZONES = ["north", "centre", "harbour", "hills"]
TEAMS = ["billing", "tech", "sales", "abuse"]


def trainer_spec(data_set: str, name: str, trainer: str) -> str:
    """The data set's spec for ``trainer``, that trainer's [training.params] its last table."""
    params = LIGHTGBM_PARAMS if trainer == "lightgbm" else MLP_PARAMS
    return spec_text(data_set, "spec.toml", name=name, trainer=trainer) + f"\n[training.params]\n{params}\n"


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
    spec, contract = trainer_spec("deliveries", name, trainer), spec_text("deliveries", "contract.toml")
    return write_data_set(folder, name, spec, contract, frame, start + timedelta(days=days))


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
    spec, contract = trainer_spec("tickets", name, trainer), spec_text("tickets", "contract.toml")
    return write_data_set(folder, name, spec, contract, frame, start + timedelta(days=days))
