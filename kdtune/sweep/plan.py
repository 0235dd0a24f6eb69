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

An Optuna search has no trial list to match: `plan_search` sorts the runs of each grid point
(study) into what its searcher is told (finished and early-stopped trials with their scores,
failed ones), what it suggests first (unfinished trials, resumed from their checkpoints) and how
many trials it may still suggest, so that each grid point ends with `num_samples` trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kdtune.config import TrialConfig
from kdtune.tracking.tags import ORPHANED, SUPERSEDED

RUN, RESUME, RERUN, SKIP = "run", "resume", "rerun", "skip"


class PastRun(NamedTuple):
    """What the plan needs of an existing trial run."""

    run_id: str
    config_hash: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, ...
    # searches only
    study: str = ""  # the grid point (kdtune.study tag)
    sampled: dict[str, Any] | None = None  # the sampled values (kdtune.sampled tag)
    score: float | None = None  # best validation metric (FINISHED), last one (early stopped)
    early_stopped: bool = False  # KILLED by the scheduler: ended, not to resume
    superseded: bool = False  # replaced by --force: as if it never ran


@dataclass
class Plan:
    actions: dict[str, str] = field(default_factory=dict)  # config hash -> run/resume/rerun/skip
    kill: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> tags; then end it KILLED
    todo: list[TrialConfig] = field(default_factory=list)  # the trials to run, in grid order
    skipped: list[str] = field(default_factory=list)  # config hashes left as they are
    failed: int = 0  # skipped because their run FAILED


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


@dataclass
class StudyPlan:
    """One grid point of an Optuna search."""

    told: list[tuple[dict, float]] = field(default_factory=list)  # (sampled values, score) of ended trials
    failed: list[dict] = field(default_factory=list)  # sampled values of FAILED trials left as they are
    resume: list[dict] = field(default_factory=list)  # sampled values to suggest first (unfinished, rerun)
    known: dict[str, float | None] = field(default_factory=dict)  # config hash -> score, of trials that ended
    left: int = 0  # trials to suggest in this run, resumes included
    ended: int = 0  # trials that count towards num_samples already


@dataclass
class SearchPlan:
    studies: dict[str, StudyPlan] = field(default_factory=dict)  # study key -> plan
    kill: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> tags; then end it KILLED
    failed: int = 0

    @property
    def left(self) -> int:
        return sum(s.left for s in self.studies.values())


def plan_search(study_keys: list[str], runs: list[PastRun], num_samples: int, *, force: bool = False,
                rerun_failed: bool = False) -> SearchPlan:
    """Per grid point: tell, resume, and how many trials still to suggest (see the module doc)."""
    plan = SearchPlan({key: StudyPlan() for key in study_keys})
    by_hash: dict[tuple[str, str], list[PastRun]] = {}
    for run in runs:
        if run.status == "RUNNING":
            plan.kill[run.run_id] = {ORPHANED: "driver stopped"}
        if run.study in plan.studies and not run.superseded and run.sampled is not None:
            by_hash.setdefault((run.study, run.config_hash), []).append(run)
    for (key, config_hash), mine in by_hash.items():
        study = plan.studies[key]
        finished = [r for r in mine if r.status == "FINISHED"]
        stopped = [r for r in mine if r.early_stopped]
        failed = [r for r in mine if r.status == "FAILED"]
        if force:  # start over: every run of the search is superseded, the study told nothing
            for r in finished:
                plan.kill[r.run_id] = {SUPERSEDED: "--force"}
            continue
        if finished or stopped:
            best = (finished or stopped)[0]
            study.told.append((best.sampled, best.score if best.score is not None else 0.0))
            study.known[config_hash] = best.score
            study.ended += 1
        elif failed and not rerun_failed:
            study.failed.append(failed[0].sampled)
            study.known[config_hash] = None
            study.ended += 1
            plan.failed += 1
        else:  # left RUNNING or KILLED by a driver that stopped, or FAILED and --rerun-failed
            study.resume.append(mine[0].sampled)
    for study in plan.studies.values():
        study.left = max(0, num_samples - study.ended)
        study.resume = study.resume[: study.left]
    return plan
