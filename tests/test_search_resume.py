"""An Optuna search SIGKILLed mid-run and started again: exactly num_samples FINISHED trials, none run
twice, the searcher rebuilt from MLflow (not Ray's folder: the second run gets another --storage
for Ray's results), the interrupted trial resumed from its checkpoint.

The sweep runs as a subprocess in its own process group (its own local Ray), as in
test_crash_resume.py, so this module starts no Ray of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import micro
from micro import micro_sweep

pytestmark = pytest.mark.slow

NUM_SAMPLES = 4
EXPERIMENT = "kdtune-tpe"


def trial_runs(uri):
    return micro.trial_runs(uri, EXPERIMENT)


def in_flight(store, uri):
    return micro.in_flight_checkpoints(store, uri, EXPERIMENT)


def test_an_optuna_search_killed_and_resumed_ends_with_num_samples_distinct_finished_trials(tmp_path, kdtune_cache):
    sweep = micro_sweep(tmp_path / "tpe.yaml", "tpe", EXPERIMENT, {"kd": True, "epochs": 2, "eval_steps": 5},
                        space={"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "w_hid": {"uniform": [0.0, 2.0]}},
                        search={"algorithm": "optuna", "num_samples": NUM_SAMPLES, "seed": 0, "startup_trials": 2},
                        max_concurrent=1)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    store = tmp_path / "mlruns"

    def cmd(storage):
        return [sys.executable, "-m", "kdtune.cli", "sweep", str(sweep), "--tracking-uri", uri, "--storage", str(storage)]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "first.log"
    proc = subprocess.Popen(cmd(store), stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline, finished_before = time.time() + 600, []
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            if "new to suggest" not in log.read_text():
                continue  # still creating the store
            finished_before = [r for r in trial_runs(uri) if r.info.status == "FINISHED"]
            if len(finished_before) >= 2 and in_flight(store, uri):
                break  # kill it while the third trial is past a checkpoint
        assert proc.poll() is None, f"the search ended before it could be killed:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            micro.kill_tree(proc.pid)
        proc.wait()
    finished_before = [r for r in trial_runs(uri) if r.info.status == "FINISHED"]
    resumable = in_flight(store, uri)
    assert len(finished_before) >= 2 and resumable
    before = {r.info.run_id: r for r in trial_runs(uri)}

    # Another folder for Ray's results: the search must not need Ray's experiment state to resume
    # (teachers and trial checkpoints are content-keyed; here they are copied along, as a move
    # would). The MLflow store stays where it is (--tracking-uri is unchanged).
    moved = tmp_path / "moved"
    shutil.copytree(store, moved, ignore=lambda folder, names: {"ray", "mlflow.db", "mlflow.db-journal"} & set(names)
                    if Path(folder) == store else ())
    # Another seed too: the interrupted trial must come back from MLflow, not from replaying the
    # seeded sampler (with the same seed and history TPE would suggest it again by itself).
    second = subprocess.run([*cmd(moved), "--set", "search.seed=1"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    ended = len(finished_before)
    assert (f"optuna: {NUM_SAMPLES} trials (4 x 1 grid point(s)): {ended} already ended, told to TPE ({ended}); "
            f"{len(resumable)} to resume; {NUM_SAMPLES - ended - len(resumable)} new to suggest") in second.stdout

    after = trial_runs(uri)
    finished = [r for r in after if r.info.status == "FINISHED"]
    hashes = [r.data.tags["kdtune.config_hash"] for r in finished]
    assert len(finished) == NUM_SAMPLES and len(set(hashes)) == NUM_SAMPLES  # exactly num_samples, no duplicates
    assert len({r.data.tags["kdtune.sampled"] for r in finished}) == NUM_SAMPLES
    assert not [r for r in after if r.info.status == "RUNNING"]
    for r in finished_before:  # not run again
        now = next(a for a in after if a.info.run_id == r.info.run_id)
        assert now.info.status == "FINISHED" and now.info.end_time == r.info.end_time
    for config_hash, step in resumable.items():  # resumed from its checkpoint, in the run it had
        (run,) = [r for r in finished if r.data.tags["kdtune.config_hash"] == config_hash]
        assert run.info.run_id in before and int(run.data.tags["kdtune.resumed_from_step"]) >= step > 0
    assert len({r.data.metrics["steps"] for r in finished}) == 1  # each ran its full schedule once
