"""The sweep's decisions without Ray or MLflow: what each grid point does given the runs the store
holds and the flags (`plan_sweep`), and when another driver's lease stops a sweep (`live_holder`)."""

from __future__ import annotations

import pytest

from kdtune.config import make_trial
from kdtune.errors import UsageError
from kdtune.sweep.lease import HEARTBEAT_S, STALE_AFTER, live_holder, refuse_if_held
from kdtune.sweep.plan import PastRun, plan_sweep

# One grid point per history: a run that finished, one that failed, one its driver left RUNNING,
# one a Ctrl-C or a scheduler ended KILLED, one never run, and one that failed then finished.
NAMES = ("finished", "failed", "running", "killed", "new", "failed-then-finished")
TRIALS = [make_trial({"dataset": "synthetic", "seed": seed}) for seed in range(len(NAMES))]
H = {name: t.config_hash for name, t in zip(NAMES, TRIALS)}
RUNS = [
    PastRun("r1", H["finished"], "FINISHED"),
    PastRun("r2", H["failed"], "FAILED"),
    PastRun("r3", H["running"], "RUNNING"),
    PastRun("r4", H["killed"], "KILLED"),
    PastRun("r5", H["failed-then-finished"], "FAILED"),
    PastRun("r6", H["failed-then-finished"], "FINISHED"),
    PastRun("r7", "another-sweeps-hash", "RUNNING"),  # not in this grid: left alone
]


def actions(plan) -> dict[str, str]:
    return {name: plan.actions[H[name]] for name in NAMES}


def test_default_skips_ended_trials_and_resumes_what_a_dead_driver_left():
    plan = plan_sweep(TRIALS, RUNS)
    assert actions(plan) == {"finished": "skip", "failed": "skip", "running": "resume", "killed": "resume",
                             "new": "run", "failed-then-finished": "skip"}
    assert plan.kill == {"r3": {"kdtune.orphaned": "driver stopped"}}
    assert [t.config_hash for t in plan.todo] == [H["running"], H["killed"], H["new"]]  # grid order
    assert plan.skipped == [H["finished"], H["failed"], H["failed-then-finished"]] and plan.failed == 1


def test_rerun_failed_reruns_only_trials_without_a_finished_run():
    plan = plan_sweep(TRIALS, RUNS, rerun_failed=True)
    assert actions(plan) == {"finished": "skip", "failed": "rerun", "running": "resume", "killed": "resume",
                             "new": "run", "failed-then-finished": "skip"}
    assert plan.kill == {"r3": {"kdtune.orphaned": "driver stopped"}} and plan.failed == 0


def test_force_reruns_everything_and_supersedes_every_finished_run():
    plan = plan_sweep(TRIALS, RUNS, force=True)
    assert set(actions(plan).values()) == {"rerun", "resume", "run"}
    assert actions(plan)["finished"] == actions(plan)["failed-then-finished"] == "rerun"
    assert plan.kill == {"r1": {"kdtune.superseded": "--force"}, "r6": {"kdtune.superseded": "--force"},
                         "r3": {"kdtune.orphaned": "driver stopped"}}
    assert len(plan.todo) == len(TRIALS) and not plan.skipped and plan.failed == 0


def test_an_empty_store_runs_the_whole_grid():
    plan = plan_sweep(TRIALS, [], force=True, rerun_failed=True)
    assert set(plan.actions.values()) == {"run"} and plan.todo == TRIALS and not plan.kill


# --- the driver lease ------------------------------------------------------------------------

NOW = 1_000_000.0


def lease(host="node-a", pid=4242, age=1.0) -> dict[str, str]:
    return {"kdtune.driver.host": host, "kdtune.driver.pid": str(pid), "kdtune.driver.heartbeat": str(NOW - age)}


def holder(tags, status="RUNNING", host="node-a", pid=999, alive=(4242,)):
    return live_holder(status, tags, now=NOW, host=host, pid=pid, alive=lambda p: p in alive)


def test_a_fresh_lease_of_a_live_driver_holds():
    assert holder(lease()).pid == 4242  # this host, pid alive
    assert holder(lease(host="node-b"), alive=()).host == "node-b"  # another host: its pid can't be checked here
    assert holder(lease(host="node-b", age=STALE_AFTER * HEARTBEAT_S - 1)) is not None


def test_a_lease_is_dead_when_its_driver_is_gone_or_silent_or_the_run_ended():
    assert holder(lease(), alive=()) is None  # SIGKILLed on this host: taken over at once
    assert holder(lease(host="node-b", age=STALE_AFTER * HEARTBEAT_S + 1)) is None  # no heartbeat for a while
    assert holder(lease(), status="FINISHED") is None and holder(lease(), status="KILLED") is None
    assert holder({}) is None  # a parent run from before the lease, or a released one
    assert holder(lease(pid=999), alive=(999,)) is None  # "alive" only because the pid is now ours


def test_the_refusal_is_one_line_naming_the_driver_and_how_to_take_over():
    class Run:  # the two fields of an MLflow Run the check reads
        class info:
            status, run_id = "RUNNING", "abc123"

        class data:
            tags = {"kdtune.driver.host": "node-b", "kdtune.driver.pid": "4242",
                    "kdtune.driver.heartbeat": "9999999999"}  # in the future: always fresh

    with pytest.raises(UsageError) as err:
        refuse_if_held(Run, "demo")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("sweep demo is already running: driver pid 4242 on host node-b")
    assert "kill 4242 on node-b" in msg and "abc123" in msg
