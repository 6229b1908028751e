"""Small data sets unlike the bundled sample, each with its spec and contract, written to a folder.

Each has a learnable binary target, so the whole loop (train, gates, serve, monitor, retrain) runs on
it; each differs from the sample where new users' data differs: integer entity keys with an entity
attributes file, integer category codes and 0/1 flags stored as integers (``subscriptions``); no
entity at all, a CSV with text timestamps and text booleans (``loans``).
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from string import Template

import numpy as np
import polars as pl

TEXT_TIME = "%Y-%m-%d %H:%M:%S"  # the CSV sets' times: text with no zone, as many exports write them
SPECS = Path(__file__).parent / "specs"  # each data set's spec.toml and contract.toml, as a user keeps them


def spec_text(data_set: str, file: str, **values: str) -> str:
    """The text of ``specs/DATA_SET/FILE`` with its ``${...}`` placeholders filled from ``values`` (each stands
    inside a TOML string, so the file parses as it is; one left unfilled is a KeyError)."""
    return Template((SPECS / data_set / file).read_text()).substitute(values)


def write_data_set(folder: Path, name: str, spec: str, contract: str, frame: pl.DataFrame, live_from: datetime) -> Path:
    """The rows before ``live_from`` as the spec's source and the rest as its live file (each where the spec's
    [data] names it, CSV or Parquet as its name says), the contract, and the spec as ``name``.toml; returns the
    spec's path. Text times are compared as text: in ``TEXT_TIME`` that is their order in time."""
    declared = tomllib.loads(spec)
    event_time = declared["features"]["event_time"]
    cut = live_from.strftime(TEXT_TIME) if frame.schema[event_time] == pl.String else live_from
    for file, rows in (
        (declared["data"]["source"], frame.filter(pl.col(event_time) < cut)),
        (declared["data"]["live"], frame.filter(pl.col(event_time) >= cut)),
    ):
        if file.endswith(".csv"):
            rows.write_csv(folder / file)
        else:
            rows.write_parquet(folder / file)
    (folder / declared["data"]["contract"]).write_text(contract)
    path = folder / f"{name}.toml"
    path.write_text(spec)
    return path


def write_subscriptions(
    folder: Path,
    name: str = "subs",
    days: int = 16,
    live_days: int = 4,
    per_day: int = 300,
    seed: int = 0,
    live_reversed: bool = False,
    anonymous_share: float = 0.0,
) -> Path:
    """Integer subscriber ids with attributes in their own file; integer channel codes and 0/1
    flags stored as integers; Parquet with naive timestamps. Returns the spec's path.

    ``live_reversed``: in the live days, who cancels is reversed (the model's ranking turns wrong).
    ``anonymous_share``: this share of sessions has no subscriber (a null key; the contract allows it)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    subscribers = 400
    ids = np.arange(1000, 1000 + subscribers)
    plans = rng.integers(1, 4, subscribers)  # plan codes 1..3
    tenure = rng.integers(1, 60, subscribers)
    pl.DataFrame({"subscriber": ids, "plan": plans, "tenure_months": tenure}).write_parquet(
        folder / "subscribers.parquet"
    )
    n = (days + live_days) * per_day
    start = datetime(2026, 3, 1)
    seconds = np.sort(rng.integers(0, (days + live_days) * 86400, n))
    who = rng.integers(0, subscribers, n)
    channel = rng.integers(1, 5, n)
    mobile = rng.integers(0, 2, n)
    minutes = rng.gamma(2.0, 10.0, n).round(1)
    logit = -2.2 + 1.1 * (plans[who] == 1) - 0.03 * tenure[who] + 0.9 * (channel == 4) - 0.04 * minutes + 0.6 * mobile
    if live_reversed:
        live = seconds >= days * 86400
        logit = np.where(live, -4.4 - logit, logit)  # the same base rate, the order of risk upside down
    cancelled = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    subscriber = (
        pl.Series(ids[who]).scatter(np.flatnonzero(rng.random(n) < anonymous_share), None)
        if anonymous_share
        else ids[who]
    )
    frame = pl.DataFrame(
        {
            "session_id": np.arange(1, n + 1),
            "logged_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "subscriber": subscriber,
            "minutes": minutes,
            "channel": channel,
            "on_mobile": mobile,
            "cancelled": cancelled,
        }
    )
    contract = spec_text("subscriptions", "contract.toml")
    if anonymous_share:
        required = 'name = "subscriber"\ntype = "integer"\nnullable = false'
        contract = contract.replace(required, 'name = "subscriber"\ntype = "integer"')
    spec = spec_text("subscriptions", "spec.toml", name=name)
    return write_data_set(folder, name, spec, contract, frame, start + timedelta(days=days))


def write_loans(
    folder: Path, name: str = "loans", days: int = 12, live_days: int = 3, per_day: int = 250, seed: int = 1
) -> Path:
    """No entity: each application stands alone. A CSV whose timestamps are text ('2026-05-02 14:03:07')
    and whose flags are 'true'/'false'; integer term codes used as a category. Returns the spec's path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = (days + live_days) * per_day
    start = datetime(2026, 5, 1)
    seconds = np.sort(rng.integers(0, (days + live_days) * 86400, n))
    income = rng.lognormal(10.5, 0.5, n).round(0)
    term = rng.choice([36, 60], n)
    grade = rng.choice(["A", "B", "C", "D"], n)
    cosigned = rng.random(n) < 0.3
    logit = (
        -1.5
        + 0.8 * (grade == "D")
        + 0.4 * (grade == "C")
        - 0.9 * cosigned
        + 0.5 * (term == 60)
        - 0.00002 * (income - 36000)
    )
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pl.DataFrame(
        {
            "application": [f"app-{i:06d}" for i in range(n)],
            "applied": [(start + timedelta(seconds=int(s))).strftime(TEXT_TIME) for s in seconds],
            "income": income,
            "term": term,
            "grade": grade,
            "cosigned": ["true" if c else "false" for c in cosigned],
            "defaulted": defaulted,
        }
    )
    spec, contract = spec_text("loans", "spec.toml", name=name), spec_text("loans", "contract.toml")
    return write_data_set(folder, name, spec, contract, frame, start + timedelta(days=days))
