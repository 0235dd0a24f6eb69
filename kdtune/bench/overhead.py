"""Sweep overhead: what Ray Tune + MLflow add to the trials' own work.

An 8-trial grid (init teacher/scratch x KD/NON-KD x seeds 1, 2; each trial one epoch over the
English training rows, or ``max_steps`` steps when given; evaluation and logging at the trial
defaults) runs twice on the same machine:

1. through the real `kdtune.sweep.run_sweep` (local Ray started by it, a fresh sqlite MLflow store
   in a temporary folder, one trial at a time with every CPU, as ``resources.cpu = cpu_count``);
   timed from the call to its return, Ray's start-up included, ``ray.shutdown`` not;
2. the same trials one after another in this process with the same thread count, each
   `kdtune.training.trial.build` + `kdtune.training.trial.run` (what the trainable does, minus Ray and MLflow).

``overhead = sweep wall time / in-process time - 1``. The sum of the runs' logged
``train_seconds`` (measured inside the trainable, so it already contains MLflow logging and
checkpoint writes) is reported beside it: ``wall - sum(train_seconds)`` is what lies outside the
trials (Ray start, worker start-up, scheduling). The one teacher the grid needs is fine-tuned
before both, so neither includes it, and so is the KD trials' shared teacher cache
(`kdtune.training.teacher_cache`, read by both); the sweep runs first, so it also pays the one-off teacher
test scoring the in-process runs then read from the teacher's cache (conservative).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import torch

from kdtune.tracking.store import default_tracking_uri


def grid(base_model: str, dataset: str, data_dir: str | None, workdir: Path, *, max_steps: int | None,
         batch_size: int, max_length: int, cpus: int, gpus: float) -> dict:
    """The sweep, as the mapping a YAML file would hold."""
    fixed = {
        "dataset": dataset, "data_dir": data_dir, "base_model": base_model,
        "train_partition": "english", "eval_partition": "english",
        "epochs": 1, "batch_size": batch_size, "max_length": max_length,
        "teacher_max_steps": 20, "teacher_batch_size": batch_size, "teacher_eval_steps": 20,
    }
    if max_steps:
        fixed.update(max_steps=max_steps, eval_steps=max(1, max_steps // 2), log_steps=max(1, min(50, max_steps // 6)))
    return {
        "name": "bench-overhead",
        "tracking": {"uri": default_tracking_uri(workdir / "mlruns"), "experiment": "kdtune-bench"},
        "storage": str(workdir / "store"),
        "fixed": fixed,
        "grid": {"init": ["teacher", "scratch"], "kd": [False, True], "seed": [1, 2]},
        "resources": {"cpu": cpus, "gpu": gpus},
        "max_concurrent": 1,
    }


def sweep_overhead(base_model: str, dataset: str, data_dir: str | None, workdir: Path, device: torch.device,
                   *, max_steps: int | None = None, batch_size: int = 32, max_length: int = 128,
                   log=lambda msg: None) -> dict:
    import ray

    import kdtune.training.trial as trial_lib
    from kdtune.config import parse_sweep
    from kdtune.sweep import run_sweep
    from kdtune.training.teacher_store import ensure_teacher
    from kdtune.tracking.runs import Tracker

    workdir = Path(workdir)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpus = 1 if device.type == "cuda" else 0
    raw = grid(base_model, dataset, data_dir, workdir, max_steps=max_steps, batch_size=batch_size,
               max_length=max_length, cpus=cpus, gpus=gpus)
    spec = parse_sweep(raw, path="<bench sweep>")
    store = workdir / "store"

    log(f"sweep overhead: fine-tuning the grid's teacher ({raw['fixed']['teacher_max_steps']} steps)")
    teacher_dir = ensure_teacher(spec.trials[0], store, log=lambda m: None, device=device)
    # The KD trials share one teacher cache (same rows for every seed and init): built before both
    # runs, like the teacher, so that neither pays it and both read it.
    import kdtune.training.teacher_cache as teacher_cache

    kd_trial = next(t for t in spec.trials if t.kd)
    teacher_cache.attach(trial_lib.build(kd_trial, teacher_dir), device, log=lambda m: log(f"sweep overhead: {m}"))

    log(f"sweep overhead: {len(spec.trials)} trials through run_sweep (Ray Tune + MLflow)")
    was_running = ray.is_initialized()
    started = time.perf_counter()
    outcome = run_sweep(spec, out=io.StringIO())
    wall = time.perf_counter() - started
    if not was_running:
        ray.shutdown()
    tracker = Tracker.open(outcome.tracking_uri, spec.experiment)
    runs = tracker.trial_runs(outcome.parent_run_id)
    logged = [r.data.metrics.get("train_seconds", float("nan")) for r in runs]
    steps = sorted({int(r.data.metrics.get("steps", -1)) for r in runs})

    log(f"sweep overhead: the same {len(spec.trials)} trials in this process")
    threads = torch.get_num_threads()
    torch.set_num_threads(cpus)
    per_trial = []
    try:
        for t in spec.trials:
            t0 = time.perf_counter()
            built = trial_lib.build(t, teacher_dir)
            trial_lib.run(built, device)
            per_trial.append(time.perf_counter() - t0)
            del built
    finally:
        torch.set_num_threads(threads)
    in_process = sum(per_trial)
    return {
        "trials": len(spec.trials), "finished": outcome.finished, "failed": outcome.failed,
        "max_steps": max_steps, "steps_per_trial": steps, "cpus_per_trial": cpus,
        "sweep_wall_s": wall, "in_process_s": in_process, "in_process_per_trial_s": per_trial,
        "logged_train_seconds": sum(logged), "overhead": wall / in_process - 1,
        "overhead_per_trial_s": (wall - in_process) / len(spec.trials),
        "outside_trials_s": wall - sum(logged),
    }
