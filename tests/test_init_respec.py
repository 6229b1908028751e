"""`init --spec` never re-points a registered model at another spec file: the registry keeps reading the
file its versions were trained from."""

from __future__ import annotations

from appliance.home import Home
from tests.conftest import cli, small_spec


def test_init_spec_from_another_path_is_refused_and_the_same_path_is_a_no_op(tmp_path):
    first, second = small_spec(tmp_path / "a"), small_spec(tmp_path / "b")  # one name, two files
    home = tmp_path / "home"
    code, out, err = cli(home, "init", "--spec", str(first))
    assert code == 0 and f"model 'fraud' registered from {first}" in out, err

    code, out, err = cli(home, "init", "--spec", str(second))
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert f"model 'fraud' is registered from {first}, not {second}" in err
    assert f"edit {first}" in err and "[model] name" in err
    with Home(home) as h:
        assert h.registry.model("fraud").spec_path == str(first)
        assert not [e for e in h.registry.audit_log("fraud") if e.action == "spec_moved"]

    code, out, err = cli(home, "init", "--spec", str(first))
    assert code == 0 and f"model 'fraud' already registered from {first}" in out, err

    first.unlink()
    code, _, err = cli(home, "init", "--spec", str(second))
    assert code != 0 and "no longer exists" in err
