"""The schedule trigger of the training pipeline: a `[training] schedule` runs the pipeline in its worker."""

from __future__ import annotations

from appliance.home import Home
from appliance.scheduler.jobs import list_jobs, run_job
from appliance.spec import load_spec
from tests.conftest import small_spec


def test_a_scheduled_training_job_runs_the_pipeline_and_registers_a_version(home_dir, tmp_path):
    # another seed than the versions already trained: a retrain with nothing new to learn from registers nothing
    spec_path = small_spec(
        tmp_path, **{'trainer = "lightgbm"': 'trainer = "lightgbm"\nschedule = "every 6h"', "seed = 7": "seed = 8"}
    )
    with Home(home_dir) as home:
        home.add_model(load_spec(spec_path))
        before = len(home.registry.versions("fraud"))
        train_job = next(j for j in list_jobs(home) if j.job == "train")
        assert train_job.schedule is not None and train_job.next_run is not None
    run = run_job(home_dir, "train", "fraud", trigger="schedule")
    assert run.status == "succeeded", run.error
    with Home(home_dir) as home:
        versions = home.registry.versions("fraud")
        assert len(versions) == before + 1 and versions[-1].status == "registered"
        assert next(j for j in list_jobs(home) if j.job == "train").last.id == run.id
