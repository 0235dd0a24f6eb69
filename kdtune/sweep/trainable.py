"""The Ray Tune function trainable: one trial config in, one tracked MLflow child run out.

`run_trial` glues `kdtune.training.trial` (data, models, training) to Ray (`tune.report` per evaluation,
checkpoints) and to MLflow (through `kdtune.tracking`). Resume state lives in the content-keyed
folder `<store>/checkpoints/<config_hash>/`, so a trial resumes from its last evaluation whether
Ray retries it or a new `kdtune sweep` run starts it again. Ray itself is handed no checkpoint:
the trainable finds its own by content, so large models are not copied twice.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from kdtune.config import make_trial, sampled_values, search_name, study_key
from kdtune.sweep.lifecycle import TrialLifecycle
from kdtune.metrics import (
    MAJORITY_HELDOUT, TEACHER_HELDOUT, best_metric, heldout_metric, metric_name, val_metric,
)
from kdtune.tracking.runs import Tracker
from kdtune.tracking.tags import (
    ATTEMPTS, CONFIG_HASH, INTERRUPTED, KIND, NODE_ID, NODE_IP, RESUMED_FROM_STEP, SAMPLED, SPACE, STOPPED,
    STUDY, SUPERSEDED, SWEEP, TEACHER_CACHE, TEACHER_KEY,
)

FAULT_ENV = "KDTUNE_FAULT"  # test hook, see inject_fault


# About 100 lines, on purpose: one trial's try/except, whose exits are the states of its
# TrialLifecycle (finished, failed, stopped); its setup and callbacks stay inline so that every
# except clause sees the same run (splitting them would spread the lifecycle again).
def run_trial(config: dict[str, Any]) -> None:
    import ray
    import torch
    from ray import tune

    import kdtune.training.trial as trial_lib
    from kdtune.training.checkpoint import has_checkpoint
    from kdtune.training.teacher_store import ensure_teacher
    from kdtune.tracking.teachers import fetch_teacher, log_teacher
    from kdtune.metrics import METRICS
    from kdtune.training.runtime import pick_device
    from kdtune.training.loop import Callbacks, NonFiniteLoss

    trial = make_trial(config["trial"])
    ctx = config["ctx"]
    torch.set_num_threads(max(1, int(ctx.get("cpus", 1))))
    tracker = Tracker(ctx["uri"], ctx["experiment_id"])
    store = Path(ctx["store"])
    ckpt_dir = store / "checkpoints" / trial.config_hash
    run_id, attempt = attach_run(tracker, trial, ctx["parent"], ctx.get("sweep", ""), ctx.get("space"))
    node = {NODE_ID: ray.get_runtime_context().get_node_id(), NODE_IP: ray.util.get_node_ip_address()}
    tracker.set_tags(run_id, node)
    device = pick_device()
    started = time.time()
    life = TrialLifecycle(tracker, run_id, trial.metric, tune.report)
    try:
        inject_fault(trial.run_name, attempt)
        teacher_dir = ensure_teacher(
            trial, store, log=lambda m: None, device=device,
            fetch=lambda dest: fetch_teacher(tracker, trial.teacher_key, dest),  # a node without it
            on_trained=lambda info, folder: log_teacher(tracker, trial.teacher_key, info, folder, ctx.get("sweep", "")),
        )
        built = trial_lib.build(trial, teacher_dir)
        state = None
        if has_checkpoint(ckpt_dir):
            state, _ = trial_lib.load_checkpoint(ckpt_dir, built)
            life.evals = len(state.history)
            tracker.set_tags(run_id, {RESUMED_FROM_STEP: state.step})
        tracker.log_dict(run_id, built.copy_report.to_dict(), "copy_report.json")
        s_cfg, t_cfg = built.student.config, built.teacher.config
        tracker.log_params(run_id, {  # the resolved shapes and choices, where the config left them implicit
            "student_layers": s_cfg.num_hidden_layers, "student_hidden": s_cfg.hidden_size,
            "hidden_match_used": built.distiller.hidden_match.used if built.distiller else "none",
            "student_heads": s_cfg.num_attention_heads, "teacher_layers": t_cfg.num_hidden_layers,
            "teacher_hidden": t_cfg.hidden_size, "train_rows": built.inputs.train_rows,
            # the student's trained embedding rows: its vocabulary, or the used ids (kdtune.models.vocab)
            "embedding_rows": built.student.get_input_embeddings().weight.shape[0],
        })

        def on_log(step: int, logs: dict[str, float]) -> None:
            metrics = {"train_loss": logs.pop("total"), "lr": logs.pop("lr")}
            if "grad_norm" in logs:  # before clipping, as transformers' Trainer logs it
                metrics["grad_norm"] = logs.pop("grad_norm")
            metrics.update({f"train_loss_{k}": v for k, v in logs.items()})
            tracker.log_metrics(run_id, metrics, step)

        def on_eval(step: int, metrics: dict[str, float], st) -> None:
            val = {val_metric(m): metrics[m] for m in METRICS}
            tracker.log_metrics(run_id, val, step)
            if step > 0:
                trial_lib.save_checkpoint(ckpt_dir, built, st, {"run_id": run_id})
            life.evaluated(step, metrics[trial.metric], st.best_score, len(st.history), node[NODE_IP])

        outcome = trial_lib.run(built, device, Callbacks(on_log=on_log, on_eval=on_eval), state)
        log_outcome(tracker, run_id, outcome, time.time() - started)
        tracker.set_tags(run_id, {TEACHER_CACHE: outcome.teacher_cache})
        if trial.save_model:
            with tempfile.TemporaryDirectory() as tmp:
                built.student.save_pretrained(tmp)
                built.tokenizer.save_pretrained(tmp)
                tracker.log_folder(run_id, tmp, "student")
        life.finish()
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        life.report_final(outcome.best_val[trial.metric], outcome.test[trial.metric], outcome.steps)
    except NonFiniteLoss as exc:
        # Retrying a diverged run with the same seed diverges again: fail it, keep the sweep going.
        life.diverged(str(exc), traceback.format_exc())
    except SystemExit:
        # tune.report exits the trial when Ray stops it (a scheduler's early stop, or the end).
        if not life.ended:
            life.stopped()
        raise
    except BaseException as exc:
        if life.ended:  # failed after its run was complete (e.g. the last report): the run stands
            raise
        reason = "CUDA out of memory" if "out of memory" in str(exc).lower() else type(exc).__name__
        life.fail(f"{reason}: {str(exc)[:500]}", traceback.format_exc())
        raise


def attach_run(tracker: Tracker, trial, parent: str, sweep: str, space: dict | None = None) -> tuple[str, int]:
    """The trial's child run: reuse the one an earlier attempt left unfinished, else create it.

    A run `--force` superseded stays as it ended: the rerun gets a run of its own. A reused run
    runs again, so it is no longer stopped or interrupted (a paused and resumed HyperBand trial).
    In a search (`space`: field -> distribution) the run is tagged with its sampled values and
    the grid point they were sampled around.
    """
    runs = [
        r for r in tracker.trial_runs(parent)
        if r.data.tags.get(CONFIG_HASH) == trial.config_hash and r.info.status != "FINISHED"
        and SUPERSEDED not in r.data.tags
    ]
    run = max(runs, key=lambda r: r.info.start_time) if runs else None
    attempt = int(run.data.tags.get(ATTEMPTS, "0")) + 1 if run else 1
    tags = {KIND: "trial", SWEEP: sweep, CONFIG_HASH: trial.config_hash}
    name = search_name(trial, list(space or []))
    run_id = tracker.start_run(name, tags, parent=parent, run_id=run.info.run_id if run else None)
    more = {ATTEMPTS: attempt, TEACHER_KEY: trial.teacher_key}
    if space:
        keys = list(space)
        more.update({SAMPLED: json.dumps(sampled_values(trial, keys)), STUDY: study_key(trial, keys),
                     SPACE: json.dumps(space)})
    tracker.set_tags(run_id, more)
    if run is not None:
        tracker.delete_tags(run_id, [k for k in (STOPPED, INTERRUPTED) if k in run.data.tags])
    tracker.log_params(run_id, trial.to_dict())
    return run_id, attempt


def log_outcome(tracker: Tracker, run_id: str, outcome, seconds: float) -> None:
    """Both F1s everywhere (docs/fidelity.md): best validation, test, per language, the teacher on
    the same test rows, and the majority-class baseline of those rows (the paper's random row)."""
    from kdtune.metrics import METRICS

    metrics = {"best_step": outcome.best_step, "steps": outcome.steps, "train_seconds": seconds}
    for m in METRICS:
        metrics[best_metric(m)] = outcome.best_val[m]
        metrics[heldout_metric(m)] = outcome.test[m]
        metrics[metric_name(TEACHER_HELDOUT, m)] = outcome.teacher_test[m]
        metrics[metric_name(MAJORITY_HELDOUT, m)] = outcome.majority_test[m]
        metrics.update({f"{heldout_metric(m)}/{lang}": v[m] for lang, v in outcome.test["per_language"].items()})
    tracker.log_metrics(run_id, metrics, outcome.steps)
    teacher_pl = outcome.teacher_test.get("per_language", {})
    nan = {m: float("nan") for m in METRICS}
    rows = [(lang, *(f"{v[m]:.6f}" for m in METRICS), *(f"{teacher_pl.get(lang, nan)[m]:.6f}" for m in METRICS))
            for lang, v in outcome.test["per_language"].items()]
    header = ["language", *(heldout_metric(m) for m in METRICS), *(metric_name(TEACHER_HELDOUT, m) for m in METRICS)]
    tracker.log_table_csv(run_id, header, rows, "per_language.csv")


def inject_fault(run_name: str, attempt: int) -> None:
    """Raise on the first N attempts of matching trials: KDTUNE_FAULT="/s7:1,/s8:99" (tests only).

    A rule ending in `:oom` ("/s8:2:oom") raises torch's CUDA out-of-memory error instead.
    """
    import torch

    for rule in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        spec, oom = (rule[: -len(":oom")], True) if rule.endswith(":oom") else (rule, False)
        pattern, _, times = spec.rpartition(":")
        if pattern in run_name and attempt <= int(times):
            message = f"injected fault ({FAULT_ENV}={rule}) on attempt {attempt}"
            raise torch.OutOfMemoryError(f"CUDA out of memory ({message})") if oom else RuntimeError(message)
