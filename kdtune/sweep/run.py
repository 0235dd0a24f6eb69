"""`run_sweep`: one run of a sweep, from preflight to the summary table.

1. Check everything that can be checked before work starts (`preflight`): bad input raises
   UsageError and nothing is written.
2. Refuse to start while another driver holds the sweep's lease (`lease`); else take the lease on
   the sweep's MLflow parent run (created the first time, reattached after) and keep it fresh.
3. Match the grid (or a random search's seeded draws) to the existing child runs by config hash
   and decide per trial: skip, resume, rerun (`plan`); for an Optuna search, sort each grid
   point's runs into what its searcher is told, what it resumes and how many it still suggests
   (`plan.plan_search`, `search`).
4. Fine-tune the teachers the remaining trials need, once each, in parallel as Ray tasks (`teachers`).
5. Run the remaining trials with Ray Tune (`tuner`), then read how they ended back from MLflow,
   write the best trial and a summary onto the parent run (`best`) and print a table (`outcome`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

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


def run_sweep(
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
        return _run(spec, tracker, parent, created, store, address, rerun_failed, force, out)


def _run(spec, tracker, parent, created, store, address, rerun_failed, force, out) -> SweepOutcome:
    from kdtune.sweep.best import update_parent
    from kdtune.sweep.teachers import prepare_presets, train_teachers
    from kdtune.sweep.tuner import init_ray, run_tuner

    say = lambda msg: print(msg, file=out or sys.stdout, flush=True)  # noqa: E731
    say(f"sweep {spec.name}: {'new' if created else 'resuming'} parent run {parent} "
        f"in experiment {spec.experiment!r} at {tracker.uri}")
    tracker.log_text(parent, spec.source, "sweep.yaml")
    tracker.log_dict(parent, [{"config_hash": t.config_hash, "run_name": t.run_name, **t.to_dict()}
                              for t in spec.trials or spec.points], "grid.json")
    tracker.log_params(parent, {"trials": spec.planned, "sweep_file": spec.path})
    if spec.search is not None:
        tracker.set_tags(parent, {SPACE: json.dumps(spec.search.space_yaml())})
    past = [past_run(r, spec.metric) for r in tracker.trial_runs(parent)]
    if spec.optuna:
        todo, work = _plan_search(spec, past, tracker, rerun_failed, force, say)
        ended = [h for study in work.studies.values() for h in study.known]
        outcome = SweepOutcome(parent, tracker.experiment_id, tracker.uri, skipped=ended, failed=work.failed)
        remaining = work.left
    else:
        plan = plan_sweep(spec.trials, past, force=force, rerun_failed=rerun_failed)
        kill(tracker, plan.kill)
        outcome = SweepOutcome(parent, tracker.experiment_id, tracker.uri, skipped=plan.skipped, failed=plan.failed)
        todo = remaining = plan.todo
        say(f"  {len(spec.trials)} trials: {len(outcome.skipped)} already ended (skipped), {len(todo)} to run")
    if not remaining:
        update_parent(tracker, parent, spec)
        tracker.end_run(parent, "FINISHED" if outcome.ok else "FAILED")
        return outcome

    prepare_presets(todo, say)
    init_ray(address, store)
    searcher = None
    try:
        train_teachers(todo if not spec.optuna else list(spec.teacher_trials.values()), store, tracker, spec, say)
        if spec.optuna:
            from kdtune.sweep.search import PerPoint, Study

            studies = [Study(spec.search, point, work.studies[key], reported_metric(spec.metric))
                       for key, point in zip(_study_keys(spec), spec.points)]
            searcher = PerPoint(studies, reported_metric(spec.metric), say)
        started_ms = int(time.time() * 1000)
        run_tuner(spec, [] if spec.optuna else todo, tracker, parent, store, say,
                  searcher=searcher, samples=remaining if spec.optuna else 0)  # how trials ended: read from MLflow
    except KeyboardInterrupt:
        tracker.end_run(parent, "KILLED")
        raise
    if searcher is not None:
        wanted, unsuggested = set(searcher.suggested), searcher.total_left
    else:
        wanted, unsuggested = {t.config_hash for t in todo}, 0
    outcome.ran = sorted(wanted)
    settle_runs(tracker, parent, wanted, outcome, early_stop=spec.scheduler is not None, since_ms=started_ms,
                unsuggested=unsuggested)
    update_parent(tracker, parent, spec)
    tracker.end_run(parent, "KILLED" if outcome.interrupted else "FINISHED" if outcome.ok else "FAILED")
    print_summary(tracker, parent, spec, say)
    return outcome


def _study_keys(spec: SweepSpec) -> list[str]:
    return [study_key(p, spec.search.keys) for p in spec.points]


def _plan_search(spec, past, tracker, rerun_failed, force, say):
    """An Optuna search's plan (`plan.plan_search`); orphans ended KILLED, --force supersedes."""
    work = plan_search(_study_keys(spec), past, spec.search.num_samples, force=force, rerun_failed=rerun_failed)
    kill(tracker, work.kill)
    ended = sum(s.ended for s in work.studies.values())
    told = sum(len(s.told) + len(s.failed) for s in work.studies.values())
    resume = sum(len(s.resume) for s in work.studies.values())
    say(f"  optuna: {spec.planned} trials ({spec.search.num_samples} x {len(spec.points)} grid point(s)): "
        f"{ended} already ended, told to TPE ({told}); {resume} to resume; {work.left - resume} new to suggest")
    # presets and teachers: the grid points stand in for trials not suggested yet
    return spec.points, work


def past_run(run, metric: str) -> PastRun:
    """What the plans need of an MLflow trial run."""
    tags, metrics = run.data.tags, run.data.metrics
    sampled = json.loads(tags[SAMPLED]) if SAMPLED in tags else None
    early = run.info.status == "KILLED" and tags.get(STOPPED) == EARLY_STOPPED
    score = metrics.get(best_metric(metric)) if run.info.status == "FINISHED" else metrics.get(val_metric(metric))
    return PastRun(run.info.run_id, tags.get(CONFIG_HASH, ""), run.info.status, study=tags.get(STUDY, ""),
                   sampled=sampled, score=score, early_stopped=early, superseded=SUPERSEDED in tags)
