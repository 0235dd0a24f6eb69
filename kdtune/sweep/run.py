"""`run_sweep`: one run of a sweep, from preflight to the summary table.

1. Check everything that can be checked before work starts (`preflight`): bad input raises
   UsageError and nothing is written.
2. Refuse to start while another driver holds the sweep's lease (`lease`); else take the lease on
   the sweep's MLflow parent run (created the first time, reattached after) and keep it fresh.
3. Match the grid (or a random search's seeded draws) to the existing child runs by config hash
   and decide per trial: skip, resume, rerun (`plan`); for an Optuna search, sort each grid
   point's runs into what its searcher is told, what it resumes and how many it still suggests
   (`plan.plan_search`, `search`). `_run` drives either through one plan interface (`GridPlan`,
   `OptunaPlan`).
4. Fine-tune the teachers the remaining trials need, once each, in parallel as Ray tasks (`teachers`).
5. Run the remaining trials with Ray Tune (`tuner`), then read how they ended back from MLflow,
   write the best trial and a summary onto the parent run (`best`) and print a table (`outcome`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kdtune.config import SweepSpec, study_key
from kdtune.metrics import best_metric, reported_metric, val_metric
from kdtune.sweep.lifecycle import kill
from kdtune.sweep.outcome import SweepOutcome, print_summary, settle_runs
from kdtune.sweep.plan import PastRun, plan_search, plan_sweep
from kdtune.sweep.preflight import preflight
from kdtune.tracking.tags import CONFIG_HASH, EARLY_STOPPED, SAMPLED, SPACE, STOPPED, STUDY, SUPERSEDED


def describe(spec: SweepSpec, out: TextIO | None = None) -> None:
    """What `--dry-run` prints: the count, then one line per trial known before running (a grid,
    a random search's draws: hash, name, sampled values), or per grid point of an Optuna search."""
    out = out or sys.stdout
    search = spec.search
    teachers = f"{len(spec.teacher_trials)} teacher(s)" + (
        " before the trials, others trained by the trials (a sampled field changes the teacher)"
        if spec.sampled_teacher and spec.optuna else "")
    print(f"sweep {spec.name}: {spec.planned} trials, {teachers}", file=out)
    if spec.description:
        print(f"  {spec.description.strip()}", file=out)
    if search is not None:
        print(f"  search: {search.algorithm}, {search.num_samples} samples x {len(spec.points)} grid point(s), "
              f"seed {search.seed}" + (f", TPE after {search.startup_trials} random trials" if spec.optuna else ""),
              file=out)
        for d in search.space:
            print(f"  space: {d.key} ~ {d.describe()}", file=out)
    if spec.scheduler:
        opts = ", ".join(f"{k} {v}" for k, v in spec.scheduler.options().items())
        print(f"  scheduler: {spec.scheduler.type} ({opts}) on {reported_metric(spec.metric)}", file=out)
    keys = search.keys if search else []
    for i, t in enumerate(spec.trials, 1):
        values = " ".join(f"{k}={getattr(t, k)}" for k in keys)
        print(f"  {i:4d}  {t.config_hash}  {t.run_name}" + (f"  {values}" if values else ""), file=out)
    if spec.optuna:
        for i, t in enumerate(spec.points, 1):
            print(f"  grid point {i}: study {study_key(t, keys)}  {t.run_name}  x {search.num_samples} "
                  f"trials, suggested by TPE as it runs", file=out)
    for key, t in spec.teacher_trials.items():
        print(f"  teacher {key}: {t.dataset} {t.base_model} on {t.resolved_teacher_partition}, "
              f"{t.teacher_epochs:g} epochs, seeds {list(t.teacher_seeds)}", file=out)


def run_sweep(  # the options of `kdtune sweep`, keyword-only
    spec: SweepSpec,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    rerun_failed: bool = False,
    force: bool = False,
    out: TextIO | None = None,
) -> SweepOutcome:
    from kdtune.tracking.store import default_root, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri or spec.tracking_uri)
    store = Path(storage or spec.storage or default_root()).expanduser().resolve()
    preflight(spec, uri, store, address)
    store.mkdir(parents=True, exist_ok=True)

    # Imported after preflight: mlflow takes seconds to import, and bad input should fail fast.
    from kdtune.sweep.lease import DriverLease, refuse_if_held
    from kdtune.tracking.runs import Tracker

    tracker = Tracker.open(uri, spec.experiment)
    earlier = tracker.find_sweep_run(spec.name)
    if earlier is not None:
        refuse_if_held(earlier, spec.name)
    parent, created = tracker.sweep_run(spec.name)
    with DriverLease(tracker, parent):
        say = lambda msg: print(msg, file=out or sys.stdout, flush=True)  # noqa: E731
        return _run(SweepRun(spec, tracker, parent, created, store, address, rerun_failed, force, say))


@dataclass
class SweepRun:
    """What the steps of one run of a sweep share (`run_sweep`'s arguments, resolved)."""

    spec: SweepSpec
    tracker: Any  # kdtune.tracking.runs.Tracker
    parent: str  # the sweep's MLflow parent run
    created: bool  # the parent run is new
    store: Path
    address: str | None
    rerun_failed: bool
    force: bool
    say: Callable[[str], None]


class GridPlan:
    """The plan of a grid (or a random search's draws): every trial is known before running.

    The plan interface `_run` drives, shared with `OptunaPlan`: `outcome` (with what is skipped),
    `left` (trials still to run), `stand_ins` (the trials presets are prepared for), `teachers`
    (the trials whose teachers are fine-tuned before the trials), `searcher()`, `trials` and
    `samples` (what the tuner runs: listed trials, or trials a searcher suggests) and `wanted()`."""

    def __init__(self, run: SweepRun, past: list[PastRun]):
        spec = run.spec
        plan = plan_sweep(spec.trials, past, force=run.force, rerun_failed=run.rerun_failed)
        kill(run.tracker, plan.kill)
        self.outcome = SweepOutcome(run.parent, run.tracker.experiment_id, run.tracker.uri, skipped=plan.skipped,
                                    failed=plan.failed)
        self.trials = self.stand_ins = self.teachers = plan.todo
        self.left, self.samples = len(plan.todo), 0
        run.say(f"  {len(spec.trials)} trials: {len(self.outcome.skipped)} already ended (skipped), "
                f"{len(plan.todo)} to run")

    def searcher(self):
        return None

    def wanted(self) -> tuple[set[str], int]:
        """The config hashes this run set out to run, and how many trials were never suggested."""
        return {t.config_hash for t in self.trials}, 0


class OptunaPlan:
    """The plan of an Optuna search (`plan.plan_search`): per grid point, what its searcher is
    told and resumes, and how many trials it still suggests; orphans ended KILLED, --force
    supersedes. The grid points stand in for trials not suggested yet (presets, teachers)."""

    def __init__(self, run: SweepRun, past: list[PastRun]):
        spec = self.spec = run.spec
        work = self.work = plan_search(_study_keys(spec), past, spec.search.num_samples, force=run.force,
                                       rerun_failed=run.rerun_failed)
        kill(run.tracker, work.kill)
        ended = [h for study in work.studies.values() for h in study.known]
        self.outcome = SweepOutcome(run.parent, run.tracker.experiment_id, run.tracker.uri, skipped=ended,
                                    failed=work.failed)
        self.stand_ins, self.teachers, self.trials = spec.points, list(spec.teacher_trials.values()), []
        self.left = self.samples = work.left
        self.say, self._searcher = run.say, None
        told = sum(len(s.told) + len(s.failed) for s in work.studies.values())
        resume = sum(len(s.resume) for s in work.studies.values())
        run.say(f"  optuna: {spec.planned} trials ({spec.search.num_samples} x {len(spec.points)} grid point(s)): "
                f"{sum(s.ended for s in work.studies.values())} already ended, told to TPE ({told}); "
                f"{resume} to resume; {work.left - resume} new to suggest")

    def searcher(self):
        from kdtune.sweep.search import PerPoint, Study

        spec, metric = self.spec, reported_metric(self.spec.metric)
        studies = [Study(spec.search, point, self.work.studies[key], metric)
                   for key, point in zip(_study_keys(spec), spec.points)]
        self._searcher = PerPoint(studies, metric, self.say)
        return self._searcher

    def wanted(self) -> tuple[set[str], int]:
        return set(self._searcher.suggested), self._searcher.total_left


def _run(run: SweepRun) -> SweepOutcome:
    from kdtune.sweep.best import update_parent
    from kdtune.sweep.teachers import prepare_presets, train_teachers
    from kdtune.sweep.tuner import init_ray, run_tuner

    spec, tracker, parent, say = run.spec, run.tracker, run.parent, run.say
    say(f"sweep {spec.name}: {'new' if run.created else 'resuming'} parent run {parent} "
        f"in experiment {spec.experiment!r} at {tracker.uri}")
    tracker.log_text(parent, spec.source, "sweep.yaml")
    tracker.log_dict(parent, [{"config_hash": t.config_hash, "run_name": t.run_name, **t.to_dict()}
                              for t in spec.trials or spec.points], "grid.json")
    tracker.log_params(parent, {"trials": spec.planned, "sweep_file": spec.path})
    if spec.search is not None:
        tracker.set_tags(parent, {SPACE: json.dumps(spec.search.space_yaml())})
    past = [past_run(r, spec.metric) for r in tracker.trial_runs(parent)]
    plan = (OptunaPlan if spec.optuna else GridPlan)(run, past)
    outcome = plan.outcome
    if not plan.left:
        update_parent(tracker, parent, spec)
        tracker.end_run(parent, "FINISHED" if outcome.ok else "FAILED")
        return outcome

    prepare_presets(plan.stand_ins, say)
    init_ray(run.address, run.store)
    try:
        train_teachers(plan.teachers, run.store, tracker, spec, say)
        searcher = plan.searcher()
        started_ms = int(time.time() * 1000)
        run_tuner(spec, plan.trials, tracker, parent, run.store, say,
                  searcher=searcher, samples=plan.samples)  # how trials ended: read from MLflow
    except KeyboardInterrupt:
        tracker.end_run(parent, "KILLED")
        raise
    wanted, unsuggested = plan.wanted()
    outcome.ran = sorted(wanted)
    settle_runs(tracker, parent, wanted, outcome, early_stop=spec.scheduler is not None, since_ms=started_ms,
                unsuggested=unsuggested)
    update_parent(tracker, parent, spec)
    tracker.end_run(parent, "KILLED" if outcome.interrupted else "FINISHED" if outcome.ok else "FAILED")
    print_summary(tracker, parent, spec, say)
    return outcome


def _study_keys(spec: SweepSpec) -> list[str]:
    return [study_key(p, spec.search.keys) for p in spec.points]


def past_run(run, metric: str) -> PastRun:
    """What the plans need of an MLflow trial run."""
    tags, metrics = run.data.tags, run.data.metrics
    sampled = json.loads(tags[SAMPLED]) if SAMPLED in tags else None
    early = run.info.status == "KILLED" and tags.get(STOPPED) == EARLY_STOPPED
    score = metrics.get(best_metric(metric)) if run.info.status == "FINISHED" else metrics.get(val_metric(metric))
    return PastRun(run.info.run_id, tags.get(CONFIG_HASH, ""), run.info.status, study=tags.get(STUDY, ""),
                   sampled=sampled, score=score, early_stopped=early, superseded=SUPERSEDED in tags)
