"""`run_sweep`: one run of a sweep, from preflight to the summary table.

1. Check everything that can be checked before work starts (`preflight`): bad input raises
   UsageError and nothing is written.
2. Refuse to start while another driver holds the sweep's lease (`lease`); else take the lease on
   the sweep's MLflow parent run (created the first time, reattached after) and keep it fresh.
3. Match the grid to the existing child runs by config hash and decide per trial: skip, resume,
   rerun (`plan`).
4. Fine-tune the teachers the remaining grid needs, once each, in parallel as Ray tasks (`teachers`).
5. Run the remaining trials with a Ray Tune grid (`tuner`), then read how they ended back from
   MLflow and print a summary table (`outcome`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from kdtune.config import SweepSpec
from kdtune.sweep.outcome import SweepOutcome, print_summary, settle_runs
from kdtune.sweep.plan import PastRun, plan_sweep
from kdtune.sweep.preflight import preflight


def describe(spec: SweepSpec, out: TextIO | None = None) -> None:
    """The expanded grid, as `--dry-run` prints it."""
    out = out or sys.stdout
    print(f"sweep {spec.name}: {len(spec.trials)} trials, {len(spec.teacher_trials)} teacher(s)", file=out)
    if spec.description:
        print(f"  {spec.description.strip()}", file=out)
    for i, t in enumerate(spec.trials, 1):
        print(f"  {i:4d}  {t.config_hash}  {t.run_name}", file=out)
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
    from kdtune.sweep.teachers import prepare_presets, train_teachers
    from kdtune.sweep.tuner import init_ray, run_tuner
    from kdtune.tracking.tags import CONFIG_HASH

    say = lambda msg: print(msg, file=out or sys.stdout, flush=True)  # noqa: E731
    say(f"sweep {spec.name}: {'new' if created else 'resuming'} parent run {parent} "
        f"in experiment {spec.experiment!r} at {tracker.uri}")
    tracker.log_text(parent, spec.source, "sweep.yaml")
    tracker.log_dict(parent, [{"config_hash": t.config_hash, "run_name": t.run_name, **t.to_dict()}
                              for t in spec.trials], "grid.json")
    tracker.log_params(parent, {"trials": len(spec.trials), "sweep_file": spec.path})

    past = [PastRun(r.info.run_id, r.data.tags.get(CONFIG_HASH, ""), r.info.status) for r in tracker.trial_runs(parent)]
    plan = plan_sweep(spec.trials, past, force=force, rerun_failed=rerun_failed)
    for run_id, tags in plan.kill.items():
        tracker.set_tags(run_id, tags)
        tracker.end_run(run_id, "KILLED")
    outcome = SweepOutcome(parent, tracker.experiment_id, tracker.uri, skipped=plan.skipped, failed=plan.failed)
    todo = plan.todo
    say(f"  {len(spec.trials)} trials: {len(outcome.skipped)} already ended (skipped), {len(todo)} to run")
    if not todo:
        tracker.end_run(parent, "FINISHED" if outcome.ok else "FAILED")
        return outcome

    prepare_presets(todo, say)
    init_ray(address, store)
    try:
        train_teachers(todo, store, tracker, spec, say)
        started_ms = int(time.time() * 1000)
        run_tuner(spec, todo, tracker, parent, store, say)  # how trials ended: read back from MLflow
    except KeyboardInterrupt:
        tracker.end_run(parent, "KILLED")
        raise
    outcome.ran = [t.config_hash for t in todo]
    settle_runs(tracker, parent, todo, outcome, early_stop=spec.scheduler is not None, since_ms=started_ms)
    tracker.end_run(parent, "KILLED" if outcome.interrupted else "FINISHED" if outcome.ok else "FAILED")
    print_summary(tracker, parent, spec, say)
    return outcome
