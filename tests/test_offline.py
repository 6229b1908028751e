"""Air-gapped: the main job runs with no outbound network, and nothing in it tries to reach one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Installed into every Python process of the job: records any attempt to resolve or connect to a
# host that is not this machine. Native code (ONNX Runtime's C++) bypasses it; the network
# namespace below blocks that too, and the job must still pass.
AUDIT = textwrap.dedent("""
    import ipaddress, os, sys

    _log = os.environ["NETWORK_AUDIT_LOG"]

    def _local(host):
        if isinstance(host, bytes):
            host = host.decode()
        if host in (None, "", "localhost"):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _hook(event, args):
        if event == "socket.connect" and isinstance(args[1], tuple):
            host = args[1][0]
        elif event == "socket.getaddrinfo":
            host = args[0]
        else:
            return
        if not _local(host):
            with open(_log, "a") as f:
                f.write(f"{event} {host!r} pid {os.getpid()}\\n")

    sys.addaudithook(_hook)
""")

JOB = textwrap.dedent("""
    set -eu
    ip link set lo up
    python -c "import appliance.cli, nannyml, onnxruntime, lightgbm, torch"  # telemetry fires at import
    python -m appliance up --headless --port 8000 > "$WORK/up.log" 2>&1 &
    server=$!
    python - <<'PY'
    import json, time, urllib.request
    for _ in range(600):
        try:
            if urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.2)
    record = {"user_id": "u00042", "event_time": "2026-10-16T09:30:00Z", "amount": 950.0,
              "merchant_category": "jewelry", "hour": 3, "is_foreign": True}
    request = urllib.request.Request("http://127.0.0.1:8000/v1/models/fraud/predict",
                                     data=json.dumps(record).encode(), headers={"content-type": "application/json"})
    print(urllib.request.urlopen(request, timeout=10).read().decode())
    PY
    kill -TERM $server
    wait $server
""")


def test_main_job_passes_with_outbound_network_blocked(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    audit_log = tmp_path / "network.log"
    env = {
        **os.environ,
        "PYTHONPATH": f"{hooks}:{ROOT}",
        "NETWORK_AUDIT_LOG": str(audit_log),
        "APPLIANCE_HOME": str(tmp_path / "home"),
        "WORK": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("NML_DISABLE_USAGE_LOGGING", None)  # the appliance itself must switch telemetry off
    env.pop("ORT_DISABLE_TELEMETRY", None)
    result = subprocess.run(
        ["unshare", "--net", "bash", "-c", JOB], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    up_log = (tmp_path / "up.log").read_text() if (tmp_path / "up.log").exists() else ""
    assert result.returncode == 0, result.stderr + up_log
    assert '"version":1' in result.stdout, result.stdout + up_log
    assert "v1 promoted to production" in up_log
    assert not audit_log.exists(), audit_log.read_text()


def test_install_from_a_wheelhouse_with_every_index_disabled(tmp_path):
    # The first build downloads ~1 GB into .cache/; later builds find the files there and only
    # rebuild the appliance's own wheel, so the test always installs the code under test.
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-wheelhouse"), str(wheelhouse)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    installed = subprocess.run(
        [str(wheelhouse / "install-offline"), str(wheelhouse), str(venv)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert installed.stdout.startswith("appliance ")
    home = tmp_path / "home"
    exe = str(venv / "bin" / "appliance")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [exe, "--home", str(home), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
        )

    assert run("init").returncode == 0
    trained = run("train", "fraud")
    assert trained.returncode == 0, trained.stderr
    assert run("promote", "fraud", "1").returncode == 0
    assert run("features", "materialize", "fraud").returncode == 0
    record = (
        '{"user_id": "u00042", "event_time": "2026-10-16T09:30:00Z", "amount": 950.0, '
        '"merchant_category": "jewelry", "hour": 3, "is_foreign": true}'
    )
    predicted = run("predict", "fraud", "--json", record)
    assert predicted.returncode == 0 and '"version": 1' in predicted.stdout, predicted.stderr
