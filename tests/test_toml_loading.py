"""One TOML loader: every way a spec, contract, settings or cost file can be wrong is an error that names the
file, the field's path in it, and what to do."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import sample_data
from appliance.data.contract import load_contract
from appliance.errors import InvalidInput, NotFound
from appliance.machine.cost import load_cost
from appliance.settings import load_settings
from appliance.spec import DeploymentSection, load_spec
from appliance.toml_file import FieldError, load_toml

ROOT = Path(__file__).resolve().parent.parent
SPEC = (sample_data.DIR / "fraud.toml").read_text()
CONTRACT = (sample_data.DIR / "contract.toml").read_text()


class Step(msgspec.Struct, frozen=True):
    size: int = 1

    def __post_init__(self) -> None:
        if self.size == 13:
            raise FieldError("size", "13 is unlucky; pick another")


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    steps: list[Step] = []
    budget: int = 0


def _file(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_missing_file_names_what_it_should_be(tmp_path):
    with pytest.raises(NotFound, match=r"^plan file .*nope\.toml does not exist; pass the path of a plan$"):
        load_toml(tmp_path / "nope.toml", Plan, "plan file", "a plan")
    with pytest.raises(InvalidInput, match="is a folder; pass the path of a plan"):
        load_toml(tmp_path, Plan, "plan file", "a plan")
    (tmp_path / "latin.toml").write_bytes(b"budget = 1 # \xe9t\xe9\n")
    with pytest.raises(InvalidInput, match=r"is not UTF-8 text \(at byte offset 13\)"):
        load_toml(tmp_path / "latin.toml", Plan, "plan file", "a plan")


def test_malformed_toml_gives_the_line_and_column(tmp_path):
    path = _file(tmp_path, "budget = 1\n[[steps]]\nsize 3\n")
    with pytest.raises(InvalidInput) as e:
        load_toml(path, Plan, "plan file", "a plan")
    assert str(e.value) == (
        f"plan file {path} is not valid TOML: Expected '=' after a key in a key/value pair "
        "(at line 3, column 6); fix the file and try again"
    )


def test_a_type_error_names_the_field_path_and_the_value(tmp_path):
    path = _file(tmp_path, "[[steps]]\nsize = 2\n[[steps]]\nsize = 'big'\n")
    with pytest.raises(InvalidInput) as e:
        load_toml(path, Plan, "plan file", "a plan", fix="fix the plan")
    assert str(e.value) == f"plan file {path}: steps[1].size: Expected `int`, got `str`; fix the plan"
    path.write_text("budgt = 3\n")
    with pytest.raises(InvalidInput, match=r"plan\.toml: Object contains unknown field `budgt`; fix the file"):
        load_toml(path, Plan, "plan file", "a plan")


def test_a_rule_in_a_post_init_gets_the_path_of_its_table(tmp_path):
    path = _file(tmp_path, "[[steps]]\nsize = 2\n[[steps]]\nsize = 13\n")
    with pytest.raises(InvalidInput) as e:
        load_toml(path, Plan, "plan file", "a plan")
    assert str(e.value) == f"plan file {path}: steps[1].size: 13 is unlucky; pick another; fix the file and try again"
    with pytest.raises(InvalidInput, match=r"^size: 13 is unlucky"):  # built in code, it is refused the same way
        Step(13)


def test_a_check_across_tables_names_its_field(tmp_path):
    def within_budget(plan: Plan) -> None:
        if sum(s.size for s in plan.steps) > plan.budget:
            raise FieldError("budget", f"{plan.budget} is less than the steps' sizes")

    path = _file(tmp_path, "budget = 1\n[[steps]]\nsize = 2\n")
    with pytest.raises(InvalidInput, match=r"plan\.toml: budget: 1 is less than the steps' sizes; fix the file"):
        load_toml(path, Plan, "plan file", "a plan", check=within_budget)
    path.write_text("budget = 5\n[[steps]]\nsize = 2\n")
    assert load_toml(path, Plan, "plan file", "a plan", check=within_budget) == Plan([Step(2)], 5)


def _spec(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SPEC, old
    return _file(tmp_path, SPEC.replace(old, new, 1), "fraud.toml")


@pytest.mark.parametrize(
    "old, new, field, problem",
    [
        ("max_batch = 64", "max_batch = 0", "serving.max_batch", "Expected `int` >= 1, got 0"),
        ("max_wait_ms = 1.0", "max_wait_ms = -1", "serving.max_wait_ms", "Expected `float` >= 0.0, got -1"),
        (
            "canary_steps = [5, 25, 50, 100]",
            "canary_steps = [50, 150]",
            "deployment.canary_steps[1]",
            "Expected `float` <= 100.0, got 150",
        ),
        (
            "canary_steps = [5, 25, 50, 100]",
            "canary_steps = [50, 20, 100]",
            "deployment.canary_steps",
            "[50.0, 20.0, 100.0] must rise strictly and end at 100",
        ),
        ("canary_steps = [5, 25, 50, 100]", "canary_steps = []", "deployment.canary_steps", "[] must rise strictly"),
        ("min_sample = 200", "min_sample = 0", "deployment.min_sample", "Expected `int` >= 1, got 0"),
        ("eval_days = 10", "eval_days = 0", "training.eval_days", "Expected `int` >= 1, got 0"),
        (
            'window = "1h" }',
            'window = "an hour" }',
            "features.aggregations[0].window",
            "duration 'an hour' is not like '30m', '24h' or '7d'",
        ),
        (
            "[training]\n",
            '[training]\nschedule = "sometimes"\n',
            "training.schedule",
            "schedule 'sometimes' is neither",
        ),
        ("[validation]\n", '[validation]\nmetric = "rmse"\n', "validation.metric", "'rmse' is not a binary metric"),
        ("[target]\n", "[target]\nclasses = [1, 2, 3]\n", "target.classes", "a binary target has no classes"),
        ('window = "1d"', 'window = "1d"\npsi_bins = 1', "monitoring.psi_bins", "must be at least 2"),
        (
            '{ name = "amount", type = "float" },',
            '{ name = "amount", type = "float" },\n    { name = "user_id", type = "category" },',
            "features",
            "the entity key 'user_id' is also listed as a feature",
        ),
        (
            '{ name = "amount", type = "float" },',
            '{ name = "amount", type = "float" },\n    { name = "is_fraud", type = "boolean" },',
            "features",
            "the target 'is_fraud' is also listed as a feature",
        ),
    ],
)
def test_a_bad_spec_names_the_file_and_the_field(tmp_path, old, new, field, problem):
    path = _spec(tmp_path, old, new)
    with pytest.raises(InvalidInput) as e:
        load_spec(path)
    message = str(e.value)
    assert message.startswith(f"model spec {path}: {field}"), message
    assert problem in message and message.endswith("; fix the spec and try again"), message


def test_a_spec_built_in_code_is_refused_by_its_cross_field_rule():
    with pytest.raises(InvalidInput, match=r"^canary_steps: \[50, 20\] must rise strictly"):
        DeploymentSection(canary_steps=[50, 20])


def test_contract_settings_and_cost_files_name_the_field(tmp_path):
    contract = _file(tmp_path, CONTRACT.replace('max_staleness = "72h"', 'max_staleness = "3 days"'), "c.toml")
    with pytest.raises(
        InvalidInput,
        match=re.escape(f"data contract {contract}: freshness.max_staleness: duration '3 days' is not like"),
    ):
        load_contract(contract)
    with pytest.raises(NotFound, match=r"data contract .*none\.toml does not exist; pass the path of a data contract"):
        load_contract(tmp_path / "none.toml")
    settings = _file(tmp_path, "[retention]\nhot_days = 0\n", "appliance.toml")
    with pytest.raises(
        InvalidInput, match=re.escape(f"settings file {settings}: retention.hot_days: Expected `int` >= 1, got 0")
    ):
        load_settings(tmp_path)
    settings.write_text("[retention]\narchive_days = -1\n[cost]\nhardware_price = -5\n")
    with pytest.raises(InvalidInput, match=r"retention\.archive_days: Expected `int` >= 0, got -1"):
        load_settings(tmp_path)
    # a cost file is read for its [cost] table alone, so a whole appliance.toml (or a spec) serves as one
    settings.write_text("[retention]\nhot_days = 3\n[cost]\nhardware_price = -5\n")
    with pytest.raises(InvalidInput, match=re.escape(f"cost file {settings}: cost.hardware_price: Expected")):
        load_cost(settings)


def test_only_the_loader_reads_toml():
    readers = sorted(
        str(p.relative_to(ROOT))
        for package in ("appliance", "tui", "storage")
        for p in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(import tomllib|from tomllib)", p.read_text(), re.M)
    )
    assert readers == ["appliance/toml_file.py"], (
        f"{readers}: read TOML with appliance.toml_file.load_toml, so its errors name the file and the field"
    )
