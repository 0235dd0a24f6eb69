"""Teacher runs in MLflow, and teachers as MLflow artifacts for nodes without a shared disk.

A teacher is trained once (by the sweep driver's Ray task). Its run records the fine-tuning; with
a remote tracking server its folder is also uploaded (artifact `teacher/`), so a trial on a node
whose local store lacks the teacher downloads it instead of training it again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kdtune.metrics import best_metric
from kdtune.tracking.runs import Tracker
from kdtune.tracking.tags import CONFIG_HASH, KIND, SWEEP, TEACHER_UPLOADED


def shares_disk(uri: str) -> bool:
    """A local store (sqlite or file): every worker reads the same disk, nothing to upload."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def log_teacher(tracker: Tracker, key: str, info: dict, folder: Path, sweep: str) -> str:
    fields = info["fields"]
    name = f"teacher/{fields['dataset']}/{fields['partition']}/{key[:8]}"
    run_id = tracker.start_run(name, {KIND: "teacher", CONFIG_HASH: key, SWEEP: sweep})
    tracker.log_params(run_id, {**fields, "best_seed": info["best_seed"]})
    best = best_metric(info["metric"])
    for seed in info["seeds"]:
        for step, loss in seed["train_loss"]:
            tracker.log_metrics(run_id, {f"train_loss_seed{seed['seed']}": loss}, step)
        tracker.log_metrics(run_id, {f"{best}_seed{seed['seed']}": seed["best_val"]})
    tracker.log_metrics(run_id, {best: info["best_val"], "train_seconds": info["train_seconds"]})
    tracker.log_dict(run_id, info, "teacher.json")
    if not shares_disk(tracker.uri):
        tracker.log_folder(run_id, folder, "teacher")
        tracker.set_tags(run_id, {TEACHER_UPLOADED: "true"})
    tracker.end_run(run_id, "FINISHED")
    return run_id


def fetch_teacher(tracker: Tracker, key: str, dest: Path) -> bool:
    """Download teacher `key` into `dest` if some experiment holds it; False when none does."""
    if shares_disk(tracker.uri):
        return False
    client = tracker.client
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        exp_ids, f"tags.`{KIND}` = 'teacher' and tags.`{CONFIG_HASH}` = '{key}' and tags.`{TEACHER_UPLOADED}` = 'true'"
        " and attributes.status = 'FINISHED'", max_results=1,
    )
    if not runs:
        return False
    shutil.rmtree(dest, ignore_errors=True)
    staging = dest.with_name(dest.name + ".download")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    got = Path(client.download_artifacts(runs[0].info.run_id, "teacher", str(staging)))
    got.rename(dest)
    shutil.rmtree(staging, ignore_errors=True)
    return True
