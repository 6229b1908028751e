"""The whole loop on data unlike the sample, through the CLI and a real server, with no code change:
integer entity keys with an entity file, integer category codes and 0/1 flags (``subscriptions``);
no entity, a CSV with text timestamps and text booleans (``loans``)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import in_production, running_server
from own_data import write_loans, write_subscriptions

from appliance.alerts.actions import RETRAINS_PER_ALERT
from appliance.cli import _example_request, main
from appliance.data.snapshots import data_version, list_snapshots
from appliance.home import Home
from appliance.replay import replay


def _cli(home: Path, *args: str) -> None:
    assert main(["--home", str(home), *args]) == 0, args


def _trained(tmp_path: Path, spec: Path, model: str, source: str) -> Path:
    home = tmp_path / "home"
    assert in_production(home, spec, source) == model
    return home


def _no_monitor(root: Path, model: str, say) -> None:
    return None


def _replay_and_retrain(home: Path, url: str, model: str, capsys) -> None:
    """Replay the live file (predictions, then labels as feedback), monitor, and retrain on the labels."""
    days = replay(home, model, url, speed=0, label_delay_hours=0, monitor=_no_monitor)
    labelled = days[-1].labels
    assert labelled > 0 and days[-1].predictions >= labelled
    _cli(home, "jobs", "run", "monitor", model)
    capsys.readouterr()
    _cli(home, "monitor", model, "--check", "performance")
    realized = [line for line in capsys.readouterr().out.splitlines() if line.startswith("2026-")]
    assert len(realized) == len(days) and all(0 < float(line.split()[3]) < 1 for line in realized)  # realized AUC
    with Home(home) as h:
        before = list_snapshots(h.conn, model)
    _cli(home, "train", model, "--retrain")
    with Home(home) as h:
        after = list_snapshots(h.conn, model)
        versions = [v.version for v in h.registry.versions(model)]
    new = [s for s in after if s.hash not in {b.hash for b in before}]
    # The retrain ingested every labelled prediction as a batch of its own, typed by the contract.
    assert len(new) == 1 and new[0].rows == labelled and new[0].quarantined == 0
    assert versions == [1, 2]


def test_integer_keys_codes_and_flags_run_the_whole_loop(tmp_path: Path, capsys):
    spec = write_subscriptions(tmp_path / "data")
    home = _trained(tmp_path, spec, "subs", "history.parquet")
    with running_server(home) as server:
        c = server.client
        base = {"logged_at": "2026-03-17T10:00:00Z", "minutes": 12.0}
        as_numbers = c.post("/v1/models/subs/predict", json={**base, "subscriber": 1005, "channel": 4, "on_mobile": 1})
        assert as_numbers.status_code == 200, as_numbers.text
        # The same values as text, true/false and Unix seconds: the same answer.
        as_text = c.post(
            "/v1/models/subs/predict",
            json={"subscriber": "1005", "logged_at": 1773741600, "minutes": 12, "channel": "4", "on_mobile": True},
        )
        assert as_text.status_code == 200, as_text.text
        assert as_text.json()["probability"] == as_numbers.json()["probability"]
        # Stored features were found: a key without history answers differently.
        stranger = c.post("/v1/models/subs/predict", json={**base, "subscriber": 999999, "channel": 4, "on_mobile": 1})
        assert stranger.json()["probability"] != as_numbers.json()["probability"]
        for bad, detail in [
            ({"subscriber": "abc"}, "entity key 'subscriber' must be an integer, got the string 'abc'"),
            ({"subscriber": [1]}, "entity key 'subscriber' must be an integer, got a list"),
            ({"on_mobile": 2}, "feature 'on_mobile' must be true or false (or 1 or 0), got an integer"),
            ({"channel": 4.5}, "feature 'channel' must be a string or an integer code, got a number"),
        ]:
            answer = c.post(
                "/v1/models/subs/predict", json={**base, "subscriber": 1005, "channel": 4, "on_mobile": 1, **bad}
            )
            assert answer.status_code == 422 and answer.json()["detail"] == detail
        # One key spelled four ways, completed together from the same stored row: one entity.
        spelled = c.post(
            "/v1/models/subs/predict",
            json=[
                {**base, "subscriber": key, "channel": 4, "on_mobile": 1} for key in (1005, " 1005 ", "01005", 1005.0)
            ],
        )
        assert len({p["probability"] for p in spelled.json()["predictions"]}) == 1, spelled.text
        with Home(home) as h:
            name, example = _example_request(h)
        assert name == "subs" and type(example["subscriber"]) is int
        assert c.post("/v1/models/subs/predict", json=example).status_code == 200
        _replay_and_retrain(home, server.url, "subs", capsys)
    # One request spelled its code and flag as text and true: the log reads them as the contract declares.
    capsys.readouterr()
    _cli(home, "monitor", "subs", "--check", "quality")
    quality = capsys.readouterr().out
    assert "missing_rate" in quality and "retyped" not in quality
    # and monitoring joined the entity file's attributes to every spelling of the key
    tenure = [
        cells
        for cells in map(str.split, quality.splitlines())
        if cells[:4] == ["2026-03-17", "v1", "tenure_months", "missing_rate"]
    ]
    assert tenure and round(float(tenure[0][4]) * int(tenure[0][6])) == 1  # the stranger 999999 alone
    _cli(home, "features", "show", "subs", "1005")
    shown = json.loads(capsys.readouterr().out)
    assert shown["plan"] in (1, 2, 3) and shown["sessions_7d"] >= 1


def test_a_model_without_entity_from_a_csv_with_text_times_runs_the_whole_loop(tmp_path: Path, capsys):
    spec = write_loans(tmp_path / "data")
    home = _trained(tmp_path, spec, "loans", "applications.csv")
    with Home(home) as h:
        snapshot = list_snapshots(h.conn, "loans")[0]
        assert snapshot.schema["applied"].startswith("Datetime") and snapshot.quarantined == 0
        name, example = _example_request(h)
    assert name == "loans" and example["applied"].endswith("Z") and "application" not in example
    with running_server(home) as server:
        c = server.client
        answer = c.post("/v1/models/loans/predict", json=example)
        assert answer.status_code == 200, answer.text
        flags = [
            c.post("/v1/models/loans/predict", json={**example, "cosigned": flag}).json()["probability"]
            for flag in (True, 1, False, 0)
        ]
        assert flags[0] == flags[1] and flags[2] == flags[3]
        assert (
            c.post("/v1/models/loans/predict", json={**example, "term": "60"}).json()["probability"]
            == c.post("/v1/models/loans/predict", json={**example, "term": 60}).json()["probability"]
        )
        _replay_and_retrain(home, server.url, "loans", capsys)
        # Without an entity, an A/B test splits by the spec's ab_key, here absent from requests: by request id.
        _cli(home, "deploy", "loans", "start", "ab", "--version", "2", "--percent", "50")
        time.sleep(0.3)  # the server re-reads deployments every 0.05 s here
        versions = {c.post("/v1/models/loans/predict", json=example).json()["version"] for _ in range(60)}
        assert versions == {1, 2}
    # A model without entity keeps no online features: nothing to show, said in one line.
    capsys.readouterr()
    assert main(["--home", str(home), "features", "show", "loans", "x"]) == 1
    assert capsys.readouterr().err == "error: model 'loans' has no entity: it keeps no features to show\n"


def test_a_spec_whose_types_disagree_with_its_contract_is_refused_at_init(tmp_path: Path, capsys):
    spec = write_subscriptions(tmp_path / "data")
    spec.write_text(spec.read_text().replace('name = "minutes", type = "float"', 'name = "minutes", type = "boolean"'))
    assert main(["--home", str(tmp_path / "home"), "init", "--spec", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "feature 'minutes' is a boolean in the spec but a float in the contract" in err


def test_an_entity_file_that_does_not_fit_the_spec_is_refused_at_init(tmp_path: Path, capsys):
    spec = write_subscriptions(tmp_path / "data")
    spec.write_text(
        spec.read_text().replace('name = "tenure_months", type = "integer"', 'name = "tenure_months", type = "boolean"')
    )
    assert main(["--home", str(tmp_path / "home"), "init", "--spec", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attribute 'tenure_months' is a boolean in the spec but holds Int64" in err


@pytest.mark.parametrize("values, reason", [([0, 1, 2], "on_mobile: not a boolean"), ([1, 0, 1], None)])
def test_an_integer_flag_is_a_boolean_only_as_0_or_1(tmp_path: Path, values, reason):
    from appliance.data.contract import check_batch, load_contract

    spec = write_subscriptions(tmp_path / "data")
    contract_path = spec.parent / "contract.toml"
    text = contract_path.read_text().replace(
        'name = "on_mobile"\ntype = "integer"\nallowed_values = [0, 1]', 'name = "on_mobile"\ntype = "boolean"'
    )
    contract_path.write_text(text)
    frame = pl.read_parquet(spec.parent / "history.parquet").head(3).with_columns(on_mobile=pl.Series(values))
    result = check_batch(load_contract(contract_path), frame)
    assert result.accepted["on_mobile"].dtype == pl.Boolean
    if reason:
        assert result.quarantined["reason"].to_list() == [reason]
    else:
        assert result.accepted["on_mobile"].to_list() == [True, False, True]


def test_a_model_trained_elsewhere_registers_serves_and_is_retrained_by_the_loop(tmp_path: Path, capsys):
    import lightgbm as lgb
    import numpy as np
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    spec = write_loans(tmp_path / "data")
    home = tmp_path / "home"
    _cli(home, "init", "--spec", str(spec))
    _cli(home, "ingest", "loans", str(spec.parent / "applications.csv"))
    # The team's own training, outside the appliance: its own category codes, its own feature matrix.
    codes = {"term": ["60", "36"], "grade": ["D", "C", "B", "A"]}

    def matrix(rows: pl.DataFrame) -> np.ndarray:
        return np.column_stack(
            [
                rows["income"].to_numpy(),
                [codes["term"].index(str(v)) for v in rows["term"]],
                [codes["grade"].index(v) for v in rows["grade"]],
                rows["cosigned"].to_numpy(),
            ]
        ).astype(np.float32)

    frame = pl.read_csv(spec.parent / "applications.csv")  # polars reads true/false as booleans
    x = matrix(frame)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": 1, "num_threads": 1},
        lgb.Dataset(x, frame["defaulted"].to_numpy(), categorical_feature=[1, 2]),
        num_boost_round=30,
    )
    onnx_model = onnxmltools.convert_lightgbm(
        booster, initial_types=[("features", FloatTensorType([None, 4]))], zipmap=False, target_opset=15
    )
    (tmp_path / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (tmp_path / "codes.json").write_text(json.dumps(codes))
    _cli(
        home, "register", "loans", "--onnx", str(tmp_path / "model.onnx"), "--categories", str(tmp_path / "codes.json")
    )
    _cli(home, "promote", "loans", "1")
    live = pl.read_csv(spec.parent / "live.csv").head(5)
    with running_server(home) as server:
        answer = server.client.post(
            "/v1/models/loans/predict",
            json=[
                {
                    "applied": r["applied"],
                    "income": r["income"],
                    "term": r["term"],
                    "grade": r["grade"],
                    "cosigned": r["cosigned"],
                }
                for r in live.iter_rows(named=True)
            ],
        )
        assert answer.status_code == 200, answer.text
        served = [p["probability"] for p in answer.json()["predictions"]]
        assert np.allclose(served, booster.predict(matrix(live)), atol=1e-5)  # the team's own model, unchanged
        _replay_and_retrain(home, server.url, "loans", capsys)
    assert main(["--home", str(home), "reproduce", "loans", "1"]) == 1
    assert "registered from an outside ONNX file" in capsys.readouterr().err


def test_up_serves_its_printed_example_and_an_accuracy_alert_retrains_on_the_feedback(tmp_path: Path, capsys):
    """`appliance up` on a spec of one's own, as a user starts it; then the live days, whose pattern
    turned, replayed through it: the model's own accuracy alert fires and its retrain learns from the
    labels that came back."""
    import subprocess
    import sys

    import httpx

    spec = write_subscriptions(tmp_path / "data", live_reversed=True)
    home = tmp_path / "home"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "up.out"
    with output.open("w") as out:  # a file, not a pipe: the server's log lines must never block it
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "--home",
                str(home),
                "up",
                "--headless",
                "--port",
                str(port),
                "--spec",
                str(spec),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert up.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        printed = output.read_text()
        assert "subs: v1 promoted to production" in printed, printed
        curl = next(line for line in printed.splitlines() if line.strip().startswith("curl "))
        example = json.loads(curl.split("-d '", 1)[1].rsplit("'", 1)[0])
        assert type(example["subscriber"]) is int and type(example["channel"]) is int
        answer = httpx.post(f"{url}/v1/models/subs/predict", json=example)
        assert answer.status_code == 200 and answer.json()["version"] == 1, answer.text
        capsys.readouterr()
        _cli(home, "replay", "subs", "--url", url, "--speed", "0", "--label-delay", "0")
        replayed = capsys.readouterr().out
    finally:
        up.terminate()
        up.wait(timeout=30)
    assert "accuracy-critical" in replayed and "below v1's reference" in replayed, replayed
    with Home(home) as h:
        from appliance.alerts.records import list_alerts

        critical = [a for a in list_alerts(h.conn, "subs", include_resolved=True) if a.rule == "accuracy-critical"]
        assert critical and {a.action for a in critical[0].actions} == {"retrain"}
        trained = [a for a in critical[0].actions if a.status != "skipped"]
        versions = h.registry.versions("subs")
        snapshots = list_snapshots(h.conn, "subs")
    # A retrain ran and its gates judged it. A repeat firing retries one the gates rejected, on the labels
    # that came back since, up to RETRAINS_PER_ALERT tries: how many ran depends on how the monitoring runs
    # and the retrains interleave, so the rule is what is checked, not one count.
    assert 1 <= len(trained) <= RETRAINS_PER_ALERT, critical[0].actions
    assert all(a.status == "failed" for a in trained[:-1]) and trained[-1].status in ("succeeded", "failed")
    assert [v.version for v in versions] == [1] + [a.detail["version"] for a in trained]
    # v2 was trained on the history and the labelled predictions that had come back when the alert fired.
    assert "/feedback/" in snapshots[1].source and snapshots[1].rows > 0
    assert versions[1].data_version == data_version(snapshots[:2]) != versions[0].data_version


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_replay_with_no_server_says_so_in_one_line(tmp_path: Path, capsys):
    spec = write_loans(tmp_path / "data", days=4, live_days=1, per_day=50)
    _cli(tmp_path / "home", "init", "--spec", str(spec))
    capsys.readouterr()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert (
        main(["--home", str(tmp_path / "home"), "replay", "loans", "--url", f"http://127.0.0.1:{port}"]) == 3
    )  # the other side is unavailable
    err = capsys.readouterr().err
    assert err.startswith(f"error: the API at http://127.0.0.1:{port} did not answer") and err.count("\n") == 1


def test_rows_with_no_entity_train_and_serve_without_stored_features(tmp_path: Path):
    """A nullable key (guest sessions): such rows train with no stored features, and a request without
    the key is answered the same way; a model trained on none of them still requires the key."""
    spec = write_subscriptions(tmp_path / "data", anonymous_share=0.1)
    home = _trained(tmp_path, spec, "subs", "history.parquet")
    with running_server(home) as server:
        c = server.client
        guest = {"logged_at": "2026-03-17T10:00:00Z", "minutes": 12.0, "channel": 4, "on_mobile": 1}
        answers = [
            c.post("/v1/models/subs/predict", json=body)
            for body in (guest, {**guest, "subscriber": None}, [guest, {**guest, "subscriber": 1005}])
        ]
        assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
        assert (
            answers[0].json()["probability"]
            == answers[1].json()["probability"]
            == answers[2].json()["predictions"][0]["probability"]
        )
    required = _trained(tmp_path / "required", write_subscriptions(tmp_path / "data2"), "subs", "history.parquet")
    with running_server(required) as server:
        refused = server.client.post("/v1/models/subs/predict", json=guest)
        assert (
            refused.status_code == 422
            and refused.json()["detail"] == "missing entity key 'subscriber' (an integer): features are looked up by it"
        )


def test_event_times_and_keys_outside_what_the_data_can_hold_are_refused(tmp_path: Path):
    """Refused at the door (422), so that one request cannot break the model's monitoring or its retrain."""
    loans = _trained(tmp_path / "a", write_loans(tmp_path / "loans", days=6, live_days=1), "loans", "applications.csv")
    subs = _trained(tmp_path / "b", write_subscriptions(tmp_path / "subs", days=10), "subs", "history.parquet")
    record = {"income": 40000.0, "term": 60, "grade": "D", "cosigned": False}
    with running_server(loans) as server:  # a model without stored features: the time is still checked
        for when in ("0001-01-01T00:00:00+14:00", "2300-01-01", 10**12):
            answer = server.client.post("/v1/models/loans/predict", json={**record, "applied": when})
            assert answer.status_code == 422 and "between 1970 and 2200" in answer.json()["detail"]
    base = {"logged_at": "2026-03-11T10:00:00Z", "minutes": 12.0, "channel": 4, "on_mobile": 1}
    with running_server(subs) as server:
        for key, detail in [
            ("--5", "must be an integer, got the string '--5'"),
            (10**30, "64-bit integer"),
            (1e300, "exact only below 2^53"),
        ]:
            answer = server.client.post("/v1/models/subs/predict", json={**base, "subscriber": key})
            assert answer.status_code == 422 and detail in answer.json()["detail"], answer.text
        assert server.client.post("/v1/models/subs/predict", json={**base, "subscriber": " 1005 "}).status_code == 200


def test_a_fraction_in_an_integer_column_is_quarantined_not_truncated(tmp_path: Path):
    from appliance.data.contract import check_batch, load_contract

    spec = write_subscriptions(tmp_path / "data")
    frame = pl.read_parquet(spec.parent / "history.parquet").head(4)
    keys = frame["subscriber"].cast(pl.Float64).to_list()
    keys[1] += 0.5  # 1121.5 would silently become subscriber 1121
    result = check_batch(load_contract(spec.parent / "contract.toml"), frame.with_columns(subscriber=pl.Series(keys)))
    assert result.quarantined["reason"].to_list() == ["subscriber: not an integer"]
    assert result.accepted["subscriber"].to_list() == [int(k) for i, k in enumerate(keys) if i != 1]


def test_a_model_whose_entity_keeps_no_features_still_checks_its_key(tmp_path: Path):
    """The key is logged, split on and trained on at the next retrain: a wrong type is a 422 even when
    the model reads no stored feature by it (a spec drafted with --entity and nothing else yet)."""
    spec = write_subscriptions(tmp_path / "data", days=10)
    text = spec.read_text()
    spec.write_text(text[: text.index("entity_attributes = [")] + text[text.index("[target]") :])  # only the key
    home = _trained(tmp_path, spec, "subs", "history.parquet")
    record = {"logged_at": "2026-03-11T10:00:00Z", "minutes": 12.0, "channel": 4, "on_mobile": 1}
    with running_server(home) as server:
        assert server.client.post("/v1/models/subs/predict", json={**record, "subscriber": 1005}).status_code == 200
        refused = server.client.post("/v1/models/subs/predict", json={**record, "subscriber": "M1005"})
        assert refused.status_code == 422
        assert refused.json()["detail"] == "entity key 'subscriber' must be an integer, got the string 'M1005'"
