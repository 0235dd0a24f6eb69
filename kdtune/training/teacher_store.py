"""The teacher stage: fine-tune a teacher once per content key, store it, reuse it everywhere.

A teacher is keyed by everything that shapes it: `fine_tune` reads a `kdtune.config.TeacherSpec`
(base model, dataset, training languages, batching, hyperparameters, clipping, metric, seeds),
never the trial, and the key hashes that spec. The store is a folder, `<store>/teachers/<key>/`,
holding a `save_pretrained` model + tokenizer and `teacher.json`. As in the paper, each seed in
`teacher_seeds` is trained and the best by the validation `metric` is kept.

Safety: a file lock per key makes concurrent trials (or processes on one machine) train a
teacher once; the folder appears by an atomic rename only when complete, so a crash mid-training
leaves no half-written teacher (a leftover temporary folder is removed on the next try).

Resuming: at every evaluation a teacher checkpoints each seed's training state to
`<store>/teachers/.<key>.resume/seed-<seed>/` (kdtune.training.checkpoint), so a teacher interrupted by a
crash, a kill or the end of a working session continues from its last evaluation on the next
try, bit for bit (kdtune.training.loop), instead of starting over: a teacher can take hours. The folder is
removed once the teacher is complete; until then a finished seed keeps only its best weights.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from kdtune.atomic import build_once

from kdtune.training.checkpoint import FINISHED, has_checkpoint, load_checkpoint, save_checkpoint, slim_checkpoint
from kdtune.config import TeacherSpec, TrialConfig
from kdtune.models import vocab
from kdtune.training.inputs import load_splits, teacher_inputs
from kdtune.training.runtime import pick_device, seed_everything
from kdtune.training.loop import Callbacks, TrainSettings, evaluate, total_steps, train

DONE = "teacher.json"


def teacher_path(store: str | Path, key: str) -> Path:
    return Path(store) / "teachers" / key


def resume_path(path: Path) -> Path:
    """Where an unfinished teacher keeps its per-seed checkpoints (beside its final folder)."""
    return path.with_name(f".{path.name}.resume")


def is_complete(path: Path) -> bool:
    return (path / DONE).is_file() and (path / "config.json").is_file()


def ensure_teacher(
    trial: TrialConfig,
    store: str | Path,
    on_trained: Callable[[dict, Path], None] | None = None,
    log: Callable[[str], None] = print,
    device: torch.device | None = None,
    fetch: Callable[[Path], bool] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Path:
    """Return the folder of the trial's teacher, fine-tuning it first if no complete one exists.

    `fetch(tmp)` may fill `tmp` from elsewhere (another node's upload) and return True, which
    saves the fine-tuning; `on_trained(info, folder)` is called after a fine-tuning, under the lock.
    """
    path = teacher_path(store, trial.teacher_key)
    trained = []  # the fine-tuning's info, when this call fine-tuned

    def fetch_or_fine_tune(tmp: Path) -> None:
        if fetch is not None and fetch(tmp) and is_complete(tmp):
            return
        shutil.rmtree(tmp, ignore_errors=True)
        trained.append(fine_tune(trial.teacher_spec(), tmp, log=log, device=device, progress=progress,
                                 resume_dir=resume_path(path)))

    def finish(folder: Path) -> None:
        shutil.rmtree(resume_path(folder), ignore_errors=True)
        if trained and on_trained:
            on_trained(trained[0], folder)

    build_once(path, fetch_or_fine_tune, done=is_complete, then=finish)
    return path


def fine_tune(
    spec: TeacherSpec,
    out: Path,
    log: Callable[[str], None] = print,
    device=None,
    progress: Callable[[str], None] = lambda line: None,
    resume_dir: Path | None = None,
) -> dict:
    """Fine-tune the base model on the teacher's languages for each seed; save the best.

    `progress(line)` gets a one-line status at every log step, with the last validation F1 (for a
    driver that shows how far a long teacher has got; the sweep throttles it). With `resume_dir`,
    each seed checkpoints there at every evaluation and continues from its checkpoint if one is
    there (a seed that had finished is not trained again).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from kdtune.models.preset import resolve_base_model
    from kdtune.quiet import quiet_transformers

    device = device or pick_device()
    base = resolve_base_model(spec.base_model, spec.dataset, spec.data_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    splits = load_splits(spec.dataset, spec.data_dir)
    started = time.time()
    seeds, best = [], None
    for seed in spec.seeds:
        seed_everything(seed)
        inputs = teacher_inputs(splits, tokenizer, spec, seed)
        names = inputs.label_names
        with quiet_transformers(errors_only=True):  # the expected "classifier newly initialized" report
            model = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=len(names), id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
            )
        if spec.used_vocab:  # the rows it trains and validates on; saved with the full vocabulary
            rows = [inputs.train_loader(0).dataset, inputs.validation.loader.dataset]
            vocab.trim_where_it_pays(model, vocab.used_ids(rows, vocab.special_ids(tokenizer, model)))
        settings = TrainSettings.from_fields(spec, seed=seed)
        n_steps = total_steps(settings, len(inputs.train_loader(0)))
        ckpt = Path(resume_dir) / f"seed-{seed}" if resume_dir is not None else None
        resumed = resume(ckpt, model, device, spec.metric, n_steps, log) if ckpt is not None else None
        run = SeedRun(f"teacher {spec.key} seed {seed}", n_steps, spec.metric, model, device, ckpt, progress,
                      resumed.losses if resumed else [], resumed.val if resumed else [])
        state = resumed.state if resumed else None
        if state is not None:
            log(f"{run.where}: resuming from step {state.step} of {n_steps}")
            progress(f"{run.where}: resuming from step {state.step}/{n_steps}")
        cb = Callbacks(on_log=run.on_log, on_eval=run.on_eval)
        # A resumed seed's state carries torch's random state (train restores it). A seed that
        # had finished only loads its best weights (train's loop has no step left to run).
        result = train(model, inputs.train_loader, inputs.validation.loader, settings, device, callbacks=cb,
                       state=state)
        vocab.restore_full(model, result.decay_to_best)
        log(f"{run.where}: best val {run.metric_name} {result.best_score:.4f} at step {result.best_step}")
        if ckpt is not None:  # kept until the teacher is complete, but only its best weights
            slim_checkpoint(ckpt)
        seeds.append({"seed": seed, "best_val": result.best_score, "best_step": result.best_step,
                      "steps": result.steps, "train_loss": run.losses})
        if best is None or result.best_score > best[0]:
            best = (result.best_score, seed)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        del model
    info = {
        "key": spec.key,
        "fields": spec.hashed_fields(),
        "base_path": base,
        "label_names": names,
        "metric": spec.metric,
        "best_seed": best[1],
        "best_val": best[0],
        "seeds": seeds,
        "train_seconds": time.time() - started,
    }
    (out / DONE).write_text(json.dumps(info, indent=2))
    return info


@dataclass
class SeedRun:
    """One teacher seed's training records and the callbacks that keep them: the loss per log step,
    the validation score per evaluation (its progress line shows the last), a checkpoint per
    evaluation when the teacher resumes. (A record built once per seed, so its fields are many;
    its methods replace closures that bound the loop's variables through default arguments.)"""

    where: str
    n_steps: int
    metric: str
    model: Any
    device: Any
    ckpt: Path | None
    progress: Callable[[str], None]
    losses: list = field(default_factory=list)  # (step, training loss)
    val: list = field(default_factory=list)  # validation `metric` per evaluation

    @property
    def metric_name(self) -> str:
        return self.metric.replace("_", "-").replace("f1", "F1")

    def on_log(self, step: int, logs: dict) -> None:
        self.losses.append((step, logs["total"]))
        last = f", last val {self.metric_name} {self.val[-1]:.4f}" if self.val else ""
        self.progress(f"{self.where}: step {step}/{self.n_steps}, train loss {logs['total']:.4f}{last}")

    def on_eval(self, step: int, metrics: dict, state) -> None:
        self.val.append(metrics[self.metric])
        if self.ckpt is not None:
            save_checkpoint(self.ckpt, self.model, state, {"train_loss": self.losses, "device": self.device.type})


@dataclass
class Resumed:
    """What a seed's checkpoint gives back: the TrainState to continue from and its records."""

    state: Any
    losses: list
    val: list


def resume(ckpt: Path, model, device, metric: str, n_steps: int, log: Callable[[str], None] = print) -> Resumed | None:
    """A seed's checkpoint, its weights loaded into `model`; None when there is none to continue
    from. One written on another kind of device is set aside: its precision (bf16 autocast on a
    GPU) and random state would make the teacher half one run and half another. So is one whose
    step does not fit this seed's `n_steps` (past it, or finished short of it: it would go on
    training from weights that are not its live ones)."""
    if not has_checkpoint(ckpt):
        return None
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()}  # if loading fails halfway
    try:
        state, meta = load_checkpoint(ckpt, model)
        if meta.get("device", device.type) != device.type:
            raise ValueError(f"written on {meta['device']}, this run is on {device.type}")
        finished = bool(meta.get(FINISHED))
        if state.step > n_steps or (finished and state.step != n_steps):
            raise ValueError(f"at step {state.step}{' (finished)' if finished else ''}, this seed has {n_steps}")
    except Exception as err:  # noqa: BLE001 - unreadable, not ours, any reason: start the seed over
        if vocab.trimmed(model) is not None and not any(k.endswith(f".{vocab.IDS}") for k in fresh):
            vocab.restore_full(model)  # the checkpoint's trimmed table trimmed it: undo
        model.load_state_dict(fresh)
        shutil.rmtree(ckpt, ignore_errors=True)
        log(f"teacher checkpoint {ckpt} not resumed ({err}): training that seed from the start")
        return None
    return Resumed(state, [(step, loss) for step, loss in meta["train_loss"]], [h[metric] for h in state.history])


def load_info(path: Path) -> dict:
    return json.loads((path / DONE).read_text())


def load_teacher(path: Path):
    """The fine-tuned teacher, frozen (a KD trial switches its attention, kdtune.models.attention)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path)
    return model.eval().requires_grad_(False)


def cached_test_scores(path: Path, teacher, test_set, eval_partition: str, device, precision: str = "auto") -> dict:
    """The teacher's test scores on one language selection, computed once and cached beside it."""
    cache = path / "eval" / f"test-{eval_partition.replace(',', '+')}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    scores = evaluate(teacher, test_set.loader, device, precision, test_set.languages)
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(scores))
    os.replace(tmp, cache)
    return scores
