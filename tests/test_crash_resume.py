"""Kill a running sweep with SIGKILL, run the same command again: nothing lost, nothing done twice.

The sweep runs as a subprocess in its own process group (its own local Ray), so this module
starts no Ray of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import micro
from micro import micro_sweep

pytestmark = pytest.mark.slow

EXPERIMENT = "kdtune-crash"


def sweep_command(tmp_path):
    """(command, env, tracking URI) of the crash sweep as a subprocess with its own store."""
    sweep = micro_sweep(tmp_path / "crash.yaml", "crash", EXPERIMENT, {"kd": True, "epochs": 2, "eval_steps": 5},
                        grid={"init": ["teacher", "base", "scratch"], "seed": [1, 2]}, max_concurrent=1)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "kdtune.cli", "sweep", str(sweep), "--tracking-uri", uri,
           "--storage", str(tmp_path / "mlruns")]
    return cmd, {**os.environ, "PYTHONUNBUFFERED": "1"}, uri


def trial_runs(uri):
    return micro.trial_runs(uri, EXPERIMENT)


def in_flight_checkpoints(store, uri):
    return micro.in_flight_checkpoints(store, uri, EXPERIMENT)


def parent_run(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'sweep'")
    return run


def test_sigkill_mid_sweep_then_rerun_finishes_the_grid_without_redoing_work(tmp_path, kdtune_cache):
    cmd, env, uri = sweep_command(tmp_path)
    store = tmp_path / "mlruns"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 600
    finished_before, lease = [], None
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            if "to run" not in (tmp_path / "first.log").read_text():
                continue  # the sweep is still creating the store: don't race its schema migration
            lease = lease or parent_run(uri).data.tags  # the running driver's lease on the parent run
            finished_before = [r for r in trial_runs(uri) if r.info.status == "FINISHED"]
            if len(finished_before) >= 2 and in_flight_checkpoints(store, uri):
                break  # kill it while a trial is past its first checkpoint
        assert proc.poll() is None, f"sweep ended before it could be killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
        assert len(finished_before) >= 2
    finally:
        if proc.poll() is None:
            micro.kill_tree(proc.pid)  # with Ray's raylet and workers: none writes to the store after
        proc.wait()
    assert lease["kdtune.driver.pid"] == str(proc.pid) and lease["kdtune.driver.host"] == socket.gethostname()
    assert time.time() - float(lease["kdtune.driver.heartbeat"]) < 600
    in_flight = in_flight_checkpoints(store, uri)  # what the killed driver left to resume from
    assert in_flight
    before = {r.info.run_id: r for r in trial_runs(uri)}
    assert len(before) < 6 or any(r.info.status != "FINISHED" for r in before.values())

    # The killed driver's lease names a dead pid on this host: the next run takes over at once.
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming parent run" in second.stdout

    after = trial_runs(uri)
    finished = [r for r in after if r.info.status == "FINISHED"]
    hashes = [r.data.tags["kdtune.config_hash"] for r in finished]
    assert len(finished) == 6 and len(set(hashes)) == 6  # one FINISHED run per grid point
    assert not [r for r in after if r.info.status == "RUNNING"]
    for r in finished_before:  # same run ids, not retrained: untouched since before the kill
        now = next(a for a in after if a.info.run_id == r.info.run_id)
        assert now.info.status == "FINISHED"
        assert now.info.end_time == r.info.end_time
        assert now.data.tags["kdtune.attempts"] == "1"
    for config_hash, step in in_flight.items():  # resumed from its checkpoint, in the run it had
        (run,) = [r for r in finished if r.data.tags["kdtune.config_hash"] == config_hash]
        # (>=: the killed driver's worker may outlive it by a moment and save a later evaluation)
        assert run.info.run_id in before and int(run.data.tags["kdtune.resumed_from_step"]) >= step > 0
        assert run.data.tags["kdtune.attempts"] == "2"
    # every trial ran its full schedule once: the step count logged at the end is the schedule's
    assert len({r.data.metrics["steps"] for r in finished}) == 1
    parent = parent_run(uri)  # ended, its lease released
    assert parent.info.status == "FINISHED" and not [k for k in parent.data.tags if k.startswith("kdtune.driver.")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_marks_the_sweep_interrupted_and_exits_130(tmp_path, kdtune_cache, sig):
    """Ctrl-C (SIGINT), or SIGTERM from a batch scheduler or `kill`: the same clean stop."""
    cmd, env, uri = sweep_command(tmp_path)
    log_path = tmp_path / "interrupted.log"
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            text = log_path.read_text()
            if "to run" in text and " eval " in text.split("to run", 1)[1]:
                break  # a trial is training: interrupt it
        assert proc.poll() is None, log_path.read_text()[-3000:]
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=180) == 130, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = log_path.read_text()
    assert "interrupted: run the same command again to resume" in out
    runs = trial_runs(uri)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    stopped = [r for r in runs if r.info.status == "KILLED"]
    assert stopped and all("resumes it" in r.data.tags.get("kdtune.interrupted", "") for r in stopped)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(stopped[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"
