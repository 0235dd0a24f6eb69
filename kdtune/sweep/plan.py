"""What a sweep run does with each grid point, given the runs the store already holds.

A pure function of the grid, the existing trial runs and the flags (no Ray, no MLflow), so the
skip/resume/rerun policy is tested on its own:

- no run yet: ``run``;
- a FINISHED run: ``skip``; with ``--force`` the run is superseded (tagged, ended KILLED, so one
  config hash never has two FINISHED runs) and the trial runs again (``rerun``);
- a FAILED run: ``skip`` (counted as failed) unless ``--rerun-failed`` or ``--force`` (``rerun``);
- a RUNNING run: its driver died (a live driver holds the lease, see `lease`), so it is ended
  KILLED as an orphan and the trial resumes from its checkpoint (``resume``), as does a trial
  whose run ended KILLED (interrupted, early stopped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from kdtune.config import TrialConfig
from kdtune.tracking.tags import ORPHANED, SUPERSEDED

RUN, RESUME, RERUN, SKIP = "run", "resume", "rerun", "skip"


class PastRun(NamedTuple):
    """What the plan needs of an existing trial run."""

    run_id: str
    config_hash: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, ...


@dataclass
class Plan:
    actions: dict[str, str] = field(default_factory=dict)  # config hash -> run/resume/rerun/skip
    kill: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> tags; then end it KILLED
    todo: list[TrialConfig] = field(default_factory=list)  # the trials to run, in grid order
    skipped: list[str] = field(default_factory=list)  # config hashes left as they are
    failed: int = 0  # skipped because their run FAILED

    def count(self, action: str) -> int:
        return sum(a == action for a in self.actions.values())


def plan_sweep(trials: list[TrialConfig], runs: list[PastRun], *, force: bool = False,
               rerun_failed: bool = False) -> Plan:
    by_hash: dict[str, list[PastRun]] = {}
    for run in runs:
        by_hash.setdefault(run.config_hash, []).append(run)
    plan = Plan()
    for t in trials:
        mine = by_hash.get(t.config_hash, [])
        for r in mine:
            if r.status == "RUNNING":
                plan.kill[r.run_id] = {ORPHANED: "driver stopped"}
        finished = [r for r in mine if r.status == "FINISHED"]
        failed = [r for r in mine if r.status == "FAILED"]
        if finished and force:
            for r in finished:
                plan.kill[r.run_id] = {SUPERSEDED: "--force"}
            action = RERUN
        elif finished:
            action = SKIP
        elif failed and not (rerun_failed or force):
            action = SKIP
            plan.failed += 1
        elif failed:
            action = RERUN
        else:
            action = RESUME if mine else RUN
        plan.actions[t.config_hash] = action
        if action == SKIP:
            plan.skipped.append(t.config_hash)
        else:
            plan.todo.append(t)
    return plan
