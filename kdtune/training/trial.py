"""One student trial, start to finish, with no Ray and no MLflow.

data -> teacher (from the store) -> student (weight copy) -> train (KD or not) -> test scores.
The Ray trainable wraps this with reporting, tracking and checkpoints; tests and the benchmark
call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import kdtune.training.checkpoint as checkpoint
from kdtune.config import TrialConfig
from kdtune.training.inputs import Inputs, build_inputs, load_splits
from kdtune.training.teacher_store import cached_test_scores, load_info, load_teacher
from kdtune.metrics import METRICS
from kdtune.models import vocab
from kdtune.training.runtime import seed_everything
from kdtune.training.loop import Callbacks, Distiller, TrainSettings, TrainState, train


@dataclass
class Built:
    """Everything a trial trains with, built from its config."""

    trial: TrialConfig
    inputs: Inputs
    teacher: torch.nn.Module
    student: torch.nn.Module
    tokenizer: Any
    distiller: Distiller | None
    copy_report: Any
    teacher_dir: Path


@dataclass
class Outcome:
    best_val: dict[str, float]  # both validation metrics at the checkpoint `trial.metric` chose
    best_step: int
    steps: int
    test: dict[str, Any]
    teacher_test: dict[str, Any]
    majority_test: dict[str, float]  # every row predicted as the test set's most frequent class
    teacher_cache: str = "off"  # kdtune.training.teacher_cache.attach: built, reused, off or skipped: why


def build(trial: TrialConfig, teacher_dir: Path, splits=None) -> Built:
    from transformers import AutoModel, AutoTokenizer

    from kdtune.training.losses import HiddenMatch, KDWeights
    from kdtune.models.attention import use_kd_attention
    from kdtune.models.layer_map import resolve_layer_map
    from kdtune.models.student import build_student

    seed_everything(trial.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    splits = splits if splits is not None else load_splits(trial.dataset, trial.data_dir)
    inputs = build_inputs(splits, tokenizer, trial)
    teacher = load_teacher(teacher_dir)
    base = None
    if trial.init == "base":
        base = AutoModel.from_pretrained(load_info(teacher_dir)["base_path"])
    student, report = build_student(
        trial.init, teacher, base, layers=trial.layers, hidden=trial.hidden,
        layer_map=_layer_map(trial.layer_map), head_mode=trial.head_mode, seed=trial.seed,
        hidden_dropout=trial.hidden_dropout, attention_dropout=trial.attention_dropout,
    )
    del base
    if trial.used_vocab and trial.epochs > 0:  # built full first: the same random numbers as without
        vocab.trim_where_it_pays(student, vocab.used_ids(student_rows(inputs), vocab.special_ids(tokenizer, student)))
    distiller = None
    t_cfg, s_cfg = teacher.config, student.config
    kd_attention = trial.kd and trial.epochs > 0 and trial.w_att > 0
    use_kd_attention(student, range(s_cfg.num_hidden_layers) if kd_attention else (), trial.att_target)
    if trial.kd and trial.epochs > 0:
        layer_map = resolve_layer_map(_layer_map(trial.layer_map), t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        use_kd_attention(teacher, set(layer_map) if kd_attention else (), trial.att_target)
        distiller = Distiller(
            teacher=teacher,
            layer_map=layer_map,
            weights=KDWeights(att=trial.w_att, hid=trial.w_hid, emb=trial.w_emb, pred=trial.w_pred, clf=trial.w_clf),
            hidden_match=HiddenMatch(s_cfg.hidden_size, t_cfg.hidden_size, trial.hidden_match),
        )  # head_map: the default, `kdtune.models.selection.head_map`, as the weight copy
    return Built(trial, inputs, teacher, student, tokenizer, distiller, report, teacher_dir)


def student_rows(inputs: Inputs) -> list:
    """The encoded rows of every split the student sees: its embedding table must hold their ids."""
    return [inputs.train_loader(0).dataset, inputs.validation.loader.dataset] + (
        [inputs.test.loader.dataset] if inputs.test is not None else [])


def _layer_map(value):
    return list(value) if isinstance(value, tuple) else value


def run(
    built: Built,
    device: torch.device,
    callbacks: Callbacks | None = None,
    state: TrainState | None = None,
    log=lambda msg: None,
) -> Outcome:
    """Train the built student, then score its best checkpoint and the teacher on the test set.
    The student ends with the full vocabulary (a used-vocabulary table is expanded after its test).

    A KD trial first attaches its teacher cache (`kdtune.training.teacher_cache`), building it if no trial
    has; `log` gets its one-line report."""
    import kdtune.training.teacher_cache as teacher_cache

    trial, inputs = built.trial, built.inputs
    cache = teacher_cache.attach(built, device, log) if trial.epochs > 0 else "off"
    # A resumed state carries torch's random state (train restores it); an older checkpoint
    # without one continues from a seed that at least differs from the first run's.
    seed_everything(trial.seed + (state.step if state else 0))
    result = train(
        built.student, inputs.train_loader, inputs.validation.loader, TrainSettings.from_fields(trial), device,
        distiller=built.distiller, callbacks=callbacks, state=state,
    )
    from kdtune.metrics import majority_scores, scores
    from kdtune.training.loop import predict

    preds, golds = predict(built.student, inputs.test.loader, device, trial.precision)
    test = scores(preds, golds, inputs.test.languages)
    # What leaves the trial has the full vocabulary: unused rows decayed up to the kept step.
    vocab.restore_full(built.student, result.decay_to_best)
    teacher_test = cached_test_scores(
        built.teacher_dir, built.teacher.to(device), inputs.test, trial.eval_partition, device, trial.precision
    )
    best = next(h for h in result.history if h["step"] == result.best_step)
    best_val = {m: best[m] for m in METRICS}
    return Outcome(best_val, result.best_step, result.steps, test, teacher_test, majority_scores(golds), cache)


# --- checkpoints (the trainable's resume state) ----------------------------------------------


def save_checkpoint(folder: Path, built: Built, state: TrainState, extra: dict) -> None:
    """The student, its KD projection W (`hidden_match`, when KD has one) and the state, atomically."""
    checkpoint.save_checkpoint(folder, built.student, state, extra, _parts(built))


def load_checkpoint(folder: Path, built: Built) -> tuple[TrainState, dict]:
    """Restore the student (and W) into `built`; return the TrainState to continue from, plus meta."""
    return checkpoint.load_checkpoint(folder, built.student, _parts(built))


def _parts(built: Built) -> dict | None:
    """What a checkpoint stores beside the student: KD's projection W."""
    return {"hidden_match": built.distiller.hidden_match} if built.distiller is not None else None
