"""One student trial, start to finish, with no Ray and no MLflow.

data -> teacher (from the store) -> student (weight copy) -> train (KD or not) -> test scores.
The Ray trainable wraps this with reporting, tracking and checkpoints; tests and the benchmark
call it directly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kdtune.config import TrialConfig
from kdtune.inputs import Inputs, build_inputs, load_splits
from kdtune.teachers import cached_test_scores, load_info, load_teacher
from kdtune.train import Callbacks, Distiller, TrainSettings, TrainState, seed_everything, train


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
    best_val_f1: float
    best_step: int
    steps: int
    test: dict[str, Any]
    teacher_test: dict[str, Any]


def settings_of(trial: TrialConfig) -> TrainSettings:
    return TrainSettings(
        epochs=trial.epochs, max_steps=trial.max_steps, lr=trial.lr, weight_decay=trial.weight_decay,
        warmup_ratio=trial.warmup_ratio, eval_steps=trial.eval_steps, log_steps=trial.log_steps,
        seed=trial.seed, precision=trial.precision, compile=trial.compile,
    )


def build(trial: TrialConfig, teacher_dir: Path, splits=None) -> Built:
    from transformers import AutoModel, AutoTokenizer

    from kdtune.distill import HiddenMatch, KDWeights
    from kdtune.models.student import build_student
    from kdtune.models.layer_map import resolve_layer_map

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
    )
    del base
    distiller = None
    if trial.kd and trial.epochs > 0:
        t_cfg, s_cfg = teacher.config, student.config
        layer_map = resolve_layer_map(_layer_map(trial.layer_map), t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        distiller = Distiller(
            teacher=teacher,
            layer_map=layer_map,
            weights=KDWeights(att=trial.w_att, hid=trial.w_hid, emb=trial.w_emb, pred=trial.w_pred, clf=trial.w_clf),
            hidden_match=HiddenMatch(s_cfg.hidden_size, t_cfg.hidden_size, trial.hidden_match),
        )  # head_map: the default, `kdtune.models.selection.head_map`, as the weight copy
    return Built(trial, inputs, teacher, student, tokenizer, distiller, report, teacher_dir)


def _layer_map(value):
    return list(value) if isinstance(value, tuple) else value


def run(
    built: Built,
    device: torch.device,
    callbacks: Callbacks | None = None,
    state: TrainState | None = None,
) -> Outcome:
    """Train the built student, then score its best checkpoint and the teacher on the test set."""
    trial, inputs = built.trial, built.inputs
    seed_everything(trial.seed + (state.step if state else 0))
    result = train(
        built.student, inputs.train_loader, inputs.validation.loader, settings_of(trial), device,
        distiller=built.distiller, callbacks=callbacks, state=state,
    )
    from kdtune.train import evaluate

    test = evaluate(built.student, inputs.test.loader, device, trial.precision, inputs.test.languages)
    teacher_test = cached_test_scores(
        built.teacher_dir, built.teacher.to(device), inputs.test, trial.eval_partition, device, trial.precision
    )
    return Outcome(result.best_f1, result.best_step, result.steps, test, teacher_test)


# --- checkpoints (the trainable's resume state) ----------------------------------------------


def save_checkpoint(folder: Path, built: Built, state: TrainState, extra: dict) -> None:
    """Write model + optimizer + best weights + meta into `folder` atomically (write, rename)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in built.student.state_dict().items()}
    if built.distiller is not None:
        weights.update({f"hidden_match.{k}": v.detach().cpu().contiguous()
                        for k, v in built.distiller.hidden_match.state_dict().items()})
    save_file(_untie(weights), tmp / "model.safetensors")
    if state.best_weights is not None:
        save_file(_untie(state.best_weights), tmp / "best.safetensors")
    torch.save({"optimizer": state.optimizer, "scheduler": state.scheduler}, tmp / "optim.pt")
    meta = {"step": state.step, "best_f1": state.best_f1, "best_step": state.best_step,
            "history": state.history, **extra}
    (tmp / "meta.json").write_text(json.dumps(meta))
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, built: Built) -> tuple[TrainState, dict]:
    """Restore weights into `built` and return the TrainState to continue from, plus meta."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    weights = load_file(folder / "model.safetensors")
    hm = {k[len("hidden_match."):]: v for k, v in weights.items() if k.startswith("hidden_match.")}
    built.student.load_state_dict({k: v for k, v in weights.items() if not k.startswith("hidden_match.")})
    if hm and built.distiller is not None:
        built.distiller.hidden_match.load_state_dict(hm)
    optim = torch.load(folder / "optim.pt", weights_only=True)
    best = load_file(folder / "best.safetensors") if (folder / "best.safetensors").exists() else None
    state = TrainState(
        step=meta["step"], best_f1=meta["best_f1"], best_step=meta["best_step"], best_weights=best,
        optimizer=optim["optimizer"], scheduler=optim["scheduler"], history=meta["history"],
    )
    return state, meta


def _untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): store copies."""
    seen: set[int] = set()
    out = {}
    for k, v in weights.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
