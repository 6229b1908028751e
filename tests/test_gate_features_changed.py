"""A spec whose features changed since production was trained: production's model cannot score the new run's
evaluation rows (it takes a feature they lack), so the no_regression gate says so and judges against
production's recorded metric on its own evaluation rows, never a "production v1 nan … better by nan%" it did
not compute. On the deliveries set (a regression, string courier keys), not the sample."""

from __future__ import annotations

import math
from pathlib import Path

from task_data import write_deliveries

from appliance.home import Home
from appliance.spec import load_spec
from appliance.training.pipeline import train


def test_a_dropped_feature_is_named_and_production_judged_on_its_recorded_metric(tmp_path: Path):
    path = write_deliveries(tmp_path / "eta", days=6, per_day=150)
    said: list[str] = []
    with Home(tmp_path / "home") as home:
        spec = load_spec(path)
        home.add_model(spec)
        assert train(home, spec).version.version == 1
        home.registry.promote("eta", 1)
        recorded = home.registry.version("eta", 1).metrics["rmse"]
        # the operator drops a request feature from the spec and trains again
        path.write_text(path.read_text().replace('    { name = "items", type = "integer" },\n', ""))
        changed = load_spec(path)
        assert "items" not in [f.name for f in changed.features.request]
        home.add_model(changed)
        outcome = train(home, changed, say=said.append)
    gate = next(c for c in outcome.version.gate_report["checks"] if c["name"] == "no_regression")
    detail = gate["detail"]
    assert "nan" not in detail.lower(), detail
    assert detail.startswith(
        "production v1 could not score this run's evaluation rows (it takes items, which this run's features no "
        "longer include); against its recorded RMSE "
    ), detail
    assert "on its own evaluation rows instead: RMSE " in detail
    # judged on the numbers it names: the share by which this run's RMSE is worse than v1's recorded one
    value = outcome.version.metrics["rmse"]
    assert math.isclose(gate["value"], (value - recorded) / recorded)
    assert gate["passed"] == (gate["value"] <= changed.validation.max_regression)
    assert any("could not score production v1" in line and "items" in line for line in said)
