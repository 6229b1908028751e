"""The service's settings: `appliance up` takes host, port and specs from the environment file the unit reads,
and scripts/install-service writes a unit that leaves them to it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from appliance.cli import main
from appliance.cli.parser import build_parser
from appliance.cli.serving import DEFAULT_HOST, DEFAULT_PORT, _listen_settings
from appliance.home import Home
from tests.own_data import write_loans, write_subscriptions

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("APPLIANCE_HOST", "APPLIANCE_PORT", "APPLIANCE_SPECS")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(url: str) -> httpx.Response | None:
    try:
        answer = httpx.get(f"{url}/readyz")
    except httpx.TransportError:
        return None
    return answer if answer.status_code == 200 else None


def test_up_serves_the_specs_on_the_host_and_port_its_environment_names(tmp_path):
    subs = write_subscriptions(tmp_path / "subs")
    loans = write_loans(tmp_path / "loans")
    port = _free_port()
    env = {
        **os.environ,
        "APPLIANCE_HOME": str(tmp_path / "home"),
        "APPLIANCE_HOST": "127.0.0.1",
        "APPLIANCE_PORT": str(port),
        "APPLIANCE_SPECS": f"{subs}::{loans}",  # as PATH: ':' between files, an empty entry is skipped
    }
    output = tmp_path / "up.out"
    with output.open("w") as out:  # a file, not a pipe: the server's log lines must never block it
        up = subprocess.Popen(
            [sys.executable, "-m", "appliance", "up", "--headless"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while (ready := _ready(url)) is None:
            assert up.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.3)
        served = {m["name"]: m["serving_version"] for m in httpx.get(f"{url}/v1/models").json()}
        curl = next(line for line in output.read_text().splitlines() if line.strip().startswith("curl "))
        target, record = re.search(r"(http\S+) .* -d '(.*)'$", curl).groups()  # type: ignore[union-attr]
        answer = httpx.post(target, content=record, headers={"content-type": "application/json"})
    finally:
        up.terminate()
        up.wait(timeout=30)
    printed = output.read_text()
    assert served == {"subs": 1, "loans": 1}, (served, printed)  # the two specs, not the bundled sample
    assert ready.json()["not_serving"] == [], ready.text
    assert target.startswith(f"{url}/v1/models/") and answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1, answer.text
    assert f"registered model 'subs' from {subs}" in printed and f"registered model 'loans' from {loans}" in printed


def test_a_bad_spec_among_several_is_one_error_naming_it_and_registers_none(tmp_path, monkeypatch, capsys):
    good = write_loans(tmp_path / "loans")
    bad = tmp_path / "broken" / "churn.toml"
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace("[target]", "[target\n"))
    monkeypatch.setenv("APPLIANCE_SPECS", f"{good}:{bad}")
    home = tmp_path / "home"
    assert main(["--home", str(home), "init", "--spec", str(good)]) == 0
    with Home(home) as h:
        before = [m.name for m in h.registry.models()]
    capsys.readouterr()

    assert main(["--home", str(home), "up", "--headless"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0], err
    with Home(home) as h:
        assert [m.name for m in h.registry.models()] == before

    twin = tmp_path / "twin" / "loans.toml"
    twin.parent.mkdir()
    shutil.copy(good, twin)
    monkeypatch.setenv("APPLIANCE_SPECS", f"{good}:{twin}")
    assert main(["--home", str(home), "up", "--headless"]) == 1
    err = capsys.readouterr().err.strip()
    assert "both declare model 'loans'" in err and str(twin) in err and str(good) in err, err


@pytest.mark.parametrize("port", ["eighty", "0", "65536", "-1", ""])
def test_a_bad_port_from_the_environment_is_refused_before_any_work(tmp_path, monkeypatch, capsys, port):
    monkeypatch.setenv("APPLIANCE_PORT", port)
    if not port:  # empty, as a commented-out line leaves it: the default
        args = build_parser().parse_args(["up"])
        _listen_settings(args)
        assert args.port == DEFAULT_PORT
        return
    assert main(["--home", str(tmp_path / "home"), "up", "--headless"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: APPLIANCE_PORT='{port}' is not a port number") and "appliance.env" in err, err
    assert not (tmp_path / "home").exists()


def test_a_bad_port_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--home", str(tmp_path / "home"), "up", "--headless", "--port", "eighty"])
    assert stopped.value.code == 2
    assert "argument --port: 'eighty' is not a port number" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_the_command_line_overrides_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("APPLIANCE_HOST", "0.0.0.0")
    monkeypatch.setenv("APPLIANCE_PORT", "9123")
    monkeypatch.setenv("APPLIANCE_SPECS", "/srv/a.toml:/srv/b.toml")
    args = build_parser().parse_args(["up"])
    _listen_settings(args)
    assert (args.host, args.port, args.spec) == ("0.0.0.0", 9123, [Path("/srv/a.toml"), Path("/srv/b.toml")])
    args = build_parser().parse_args(["up", "--host", "::1", "--port", "8001", "--spec", "c.toml"])
    _listen_settings(args)
    assert (args.host, args.port, args.spec) == ("::1", 8001, [Path("c.toml")])


def test_the_parser_holds_no_default_from_this_machines_environment(monkeypatch):
    """The CLI reference in docs/ is generated from the parser: the environment it ran in must not show."""
    monkeypatch.setenv("APPLIANCE_HOST", "10.1.2.3")
    monkeypatch.setenv("APPLIANCE_PORT", "9123")
    args = build_parser().parse_args(["up"])
    assert (args.host, args.port, args.spec) == (None, None, None)


def test_the_environment_file_documents_every_setting_with_its_default(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    text = (ROOT / "systemd" / "appliance.env").read_text()
    assert not [line for line in text.splitlines() if line and not line.startswith("#")]  # all commented
    documented = dict(re.findall(r"^# (APPLIANCE_[A-Z_]+)=(\S*)$", text, re.M))
    read = set(re.findall(r"APPLIANCE_[A-Z_]+", (ROOT / "appliance" / "cli" / "serving.py").read_text()))
    read |= set(re.findall(r"APPLIANCE_[A-Z_]+", (ROOT / "appliance" / "logs.py").read_text()))
    assert read | {"APPLIANCE_HOME"} == set(documented)
    assert documented["APPLIANCE_HOST"] == DEFAULT_HOST and int(documented["APPLIANCE_PORT"]) == DEFAULT_PORT
    unit = (ROOT / "systemd" / "appliance.service").read_text()
    assert f"Environment=APPLIANCE_HOME={documented['APPLIANCE_HOME']}" in unit


def test_install_service_prints_a_unit_that_leaves_host_port_and_specs_to_the_environment_file(tmp_path):
    printed = subprocess.run(
        [str(ROOT / "scripts" / "install-service"), "--print"], capture_output=True, text=True, check=True
    ).stdout
    assert "@PREFIX@" not in printed
    (exec_start,) = [line for line in printed.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == f"ExecStart={ROOT}/.venv/bin/appliance up --headless"  # no --host, --port or --spec
    assert "EnvironmentFile=-/etc/appliance/appliance.env" in printed.splitlines()
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "appliance.service"
        unit.write_text(printed)
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
    refused = subprocess.run([str(ROOT / "scripts" / "install-service"), "--prefix"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.startswith("error: unknown argument '--prefix'")


def test_a_restart_with_a_models_source_gone_keeps_every_production_version_serving(tmp_path: Path):
    """`up`'s main job on a restart: a model whose data source moved keeps its production version (nothing is
    retrained, and `up` says why), and the other models come up as ever; the restart is no outage. A spec whose
    features changed is said to differ from what production serves."""
    from appliance.bring_up import bring_up
    from tests.conftest import in_production

    home = tmp_path / "home"
    gone = write_subscriptions(tmp_path / "subs", days=6, live_days=1, per_day=120)
    kept = write_loans(tmp_path / "loans")
    in_production(home, gone, "history.parquet")
    in_production(home, kept)
    (gone.parent / "history.parquet").rename(tmp_path / "moved.parquet")
    kept.write_text(kept.read_text().replace('    { name = "cosigned", type = "boolean" },\n', ""))  # a feature dropped
    said: list[str] = []
    with Home(home) as h:
        bring_up(h, None, said.append)
        assert h.registry.production_versions() == {"subs": 1, "loans": 1}
    assert any(
        line.startswith("subs: v1 keeps serving; nothing was retrained, as its [data] source could not be ingested")
        and "history.parquet does not exist" in line
        for line in said
    ), said
    assert "loans: v1 in production, no new data — nothing to retrain" in said
    assert (
        "loans: the spec's features differ from those v1 serves (without ['cosigned']); v1 keeps taking its own "
        "until a version trained on the spec's is promoted (`appliance train loans`)"
    ) in said
    assert any(line.startswith("subs: materialized features of") for line in said), said
