"""The Runs tab while training runs: how far it is, as the run records it, changing under the operator's
eyes; and a retrain whose gates rejected its version reads 'rejected', in the tab and in `appliance runs list`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from own_data import write_loans
from test_tui import settle, text

from appliance import progress, tracking
from appliance.cli import main
from appliance.home import Home
from appliance.spec import load_spec
from appliance.tracking.queries import list_runs
from appliance.tracking.run import PROGRESS_EVERY_S
from appliance.training.pipeline import train
from tui.app import Dashboard


def _runs_tab(home: Path, steps) -> None:
    """The dashboard headless at 80×24, refreshing on its own as under `appliance up`, on the Runs tab."""
    app = Dashboard(home, refresh_seconds=0.1)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("5")
            await settle(pilot)
            await steps(pilot)

    asyncio.run(main())


async def _until(pilot, selector: str, wanted: str) -> str:
    """What ``selector`` shows once it holds ``wanted`` (the tab reloads itself; no key is pressed)."""
    for _ in range(100):
        shown = text(pilot.app, selector)
        if wanted in shown:
            return shown
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wanted!r} never showed; last: {shown!r}")


def test_a_running_run_shows_its_iteration_and_metric_and_the_tab_follows_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home(home).close()
    run = tracking.start_run("churn", "train", home=home, kind="pipeline")

    async def steps(pilot) -> None:
        with progress.watching(run.show_progress), progress.step("iteration", 1000) as rounds:
            rounds.update(340, {"valid auc": 0.8123})
            # at 80 columns a running run's STATUS is its progress alone: only a running run has one
            await _until(pilot, "#runs-table", "iteration 340/1,000 · valid auc 0.8123")
            assert "progress: iteration 340/1,000" in await _until(pilot, "#run-detail", "progress:")
            await asyncio.sleep(PROGRESS_EVERY_S)  # the run records its progress at most once a second
            rounds.update(700, {"valid auc": 0.8301})
            await _until(pilot, "#runs-table", "iteration 700/1,000 · valid auc 0.8301")
        run.finish()
        row = await _until(pilot, "#runs-table", "succeeded")
        assert "iteration" not in row  # a finished run shows its status, not its last progress

    _runs_tab(home, steps)


def test_a_run_whose_gates_rejected_its_version_reads_rejected(tmp_path: Path, capsys) -> None:
    """A model without an entity, text timestamps, a gate it cannot pass: the run ran to its end, its
    version is rejected, and neither the tab nor the CLI calls that 'succeeded'."""
    spec_path = write_loans(tmp_path / "data", days=8, live_days=1, per_day=120)
    spec_path.write_text(spec_path.read_text().replace("min_auc = 0.6", "min_auc = 0.999"))
    home = tmp_path / "home"
    with Home(home) as h:
        spec = load_spec(spec_path)
        h.add_model(spec)
        outcome = train(h, spec)
        assert outcome.version.status == "rejected"
        [run] = list_runs(h.tracking, "loans")
    assert (run.status, run.verdict, run.outcome) == ("succeeded", "rejected", "rejected")

    assert main(["--home", str(home), "runs", "list"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(run.id[:8])]
    assert " rejected " in row and "succeeded" not in row

    async def steps(pilot) -> None:
        row = await _until(pilot, "#runs-table", run.id[:8])
        assert " rejected " in row and "succeeded" not in row
        detail = await _until(pilot, "#run-detail", "run ")
        assert "'train'  rejected " in detail.splitlines()[0]

    _runs_tab(home, steps)
