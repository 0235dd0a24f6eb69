"""The training loop: explicit, device-agnostic, no Ray and no MLflow.

One function, `train`, fine-tunes a classifier with cross entropy (NON-KD) or with the TinyBERT
losses against a frozen teacher (KD). It clips the gradient norm at `max_grad_norm` (transformers'
Trainer default, 1.0), evaluates every `eval_steps` optimizer steps and at the end, keeps the
weights with the best validation `metric` (macro-F1 or micro-F1; both are always computed), and
tells the caller what happened through callbacks, so the same loop serves teachers, students,
tests and the benchmark.

Resuming: `TrainState` holds everything needed to continue bit-for-bit (step, optimizer,
scheduler, best weights, and torch's random state, which dropout draws from); each epoch's batch
order depends only on (seed, epoch), so a resumed run skips the batches it has already seen and
continues with the same order and the same dropout masks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from kdtune.config import default_of
from kdtune.metrics import DEFAULT_METRIC, scores
from kdtune.models import vocab
from kdtune.training.runtime import autocast_for, capture_rng, fast_matmul, restore_rng, to_device


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf: the trial stops and is recorded as failed."""


@dataclass
class TrainSettings:
    """How one model trains; each default is the trial config's (`kdtune.config.TrialConfig`)."""

    epochs: float = default_of("epochs")
    max_steps: int | None = default_of("max_steps")  # caps epochs * steps_per_epoch when set
    lr: float = default_of("lr")
    weight_decay: float = default_of("weight_decay")
    warmup_ratio: float = default_of("warmup_ratio")
    eval_steps: int = default_of("eval_steps")
    log_steps: int = default_of("log_steps")
    seed: int = default_of("seed")
    max_grad_norm: float = default_of("max_grad_norm")  # clip the global gradient norm, as transformers' Trainer; 0 = off
    metric: str = DEFAULT_METRIC  # the validation score that picks the best checkpoint
    precision: str = default_of("precision")  # auto: bf16 autocast on CUDA when supported, fp32 otherwise
    compile: bool = False  # torch.compile the student and teacher (pays only for long runs)

    @classmethod
    def from_fields(cls, source, **overrides) -> "TrainSettings":
        """Settings read from any object with same-named attributes (a trial, a teacher spec)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in overrides]
        return cls(**{n: getattr(source, n) for n in names if hasattr(source, n)}, **overrides)


@dataclass
class Distiller:
    """What KD needs beside the student: the frozen teacher and how layers/heads/widths pair.

    With attention in the loss, both models run `kdtune.models.attention.use_kd_attention` (the
    student reading every layer, the teacher the mapped ones), so maps are taken before dropout."""

    teacher: torch.nn.Module
    layer_map: list[int]
    weights: Any  # kdtune.training.losses.KDWeights
    hidden_match: torch.nn.Module  # kdtune.training.losses.HiddenMatch (may hold learnable W)
    head_map: list[int] | None = None
    # A kdtune.training.teacher_cache.TeacherCache: the teacher's outputs read from disk instead of computed
    # (training batches carry a ``row`` tensor that indexes it). None: run the teacher.
    teacher_cache: Any = None


@dataclass
class TrainState:
    step: int = 0
    best_score: float = -1.0  # the best validation value of TrainSettings.metric
    best_step: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    history: list[dict] = field(default_factory=list)  # evaluation records
    rng: dict[str, Any] | None = None  # torch's CPU (and CUDA) generator states at `step`


@dataclass
class TrainResult:
    best_score: float
    best_step: int
    steps: int
    history: list[dict]
    # What AdamW's weight decay multiplied a zero-gradient row by up to `best_step`: the factor
    # for the rows a used-vocabulary table left out (`kdtune.models.vocab.restore_full`).
    decay_to_best: float = 1.0


@dataclass
class Callbacks:
    """Hooks the loop calls; each gets plain numbers. `on_eval` may save a checkpoint."""

    on_log: Callable[[int, dict[str, float]], None] = lambda step, logs: None
    on_eval: Callable[[int, dict[str, float], "TrainState"], None] = lambda step, m, state: None


def make_optimizer(params: list, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, with the fused kernel where torch has one (CPU and CUDA floating-point tensors).

    The fused kernel updates each tensor in one pass instead of about ten elementwise ops; it
    matters because the student's word embeddings (vocab x hidden) are updated densely every step
    (bench: the optimizer step of the small preset fell from ~30 ms to ~7 ms on CPU).
    """
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused or None)


def total_steps(settings: TrainSettings, steps_per_epoch: int) -> int:
    steps = math.ceil(settings.epochs * steps_per_epoch)
    return min(steps, settings.max_steps) if settings.max_steps else steps


def train(
    model: torch.nn.Module,
    make_train_loader: Callable[[int], Any],
    val_loader: Any,
    settings: TrainSettings,
    device: torch.device,
    distiller: Distiller | None = None,
    callbacks: Callbacks | None = None,
    state: TrainState | None = None,
) -> TrainResult:
    """Train `model`; `make_train_loader(epoch)` returns that epoch's batches (seeded by epoch).

    Ends with the best-by-validation weights loaded into `model`. With `epochs == 0` it only
    evaluates the model as it is (the copy-only score of the paper's Table 5).
    """
    callbacks = callbacks or Callbacks()
    state = state or TrainState()
    model.to(device)
    steps_per_epoch = len(make_train_loader(0))
    n_steps = total_steps(settings, steps_per_epoch)

    if n_steps == 0:
        metrics = evaluate(model, val_loader, device, settings.precision)
        record_eval(model, state, 0, metrics, settings.metric)
        callbacks.on_eval(0, metrics, state)
        return TrainResult(state.best_score, state.best_step, 0, state.history)

    params = [p for p in model.parameters() if p.requires_grad]
    if distiller is not None:
        distiller.teacher.to(device).eval().requires_grad_(False)
        distiller.hidden_match.to(device)
        params += [p for p in distiller.hidden_match.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, settings, device)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * n_steps), n_steps
    )
    if state.optimizer is not None:  # one written with the full table is sliced to the used rows
        optimizer.load_state_dict(vocab.fit_optimizer(model, params, state.optimizer))
        scheduler.load_state_dict(state.scheduler)
    step_fn = make_step(model, distiller, device, settings.precision, compile=settings.compile)

    with fast_matmul(device, settings.precision):
        model.train()
        running: dict[str, torch.Tensor] = {}
        n_running = 0
        epoch, skip = divmod(state.step, steps_per_epoch)
        # Resumed: put torch's random state (dropout's masks) back where the interrupted run took
        # it. Making a DataLoader iterator draws its base seed from that state, and the
        # interrupted run made that draw at the start of the epoch: so restore before the draw at
        # an epoch boundary, after it mid-epoch (skip > 0 only in the first epoch of a resume).
        if state.rng is not None and skip == 0:
            restore_rng(state.rng)
        while state.step < n_steps:
            batches = iter(make_train_loader(epoch))
            if state.rng is not None and skip > 0:
                restore_rng(state.rng)
            for i, batch in enumerate(batches):
                if i < skip:
                    continue  # resumed mid-epoch: these batches were already trained on
                losses = step_fn(batch)
                losses["total"].backward()
                if settings.max_grad_norm > 0:  # returns the norm before clipping, as Trainer logs it
                    losses["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                for k, v in losses.items():
                    running[k] = running.get(k, 0) + v.detach()
                n_running += 1

                last = state.step == n_steps
                if state.step % settings.log_steps == 0 or last:
                    logs = {k: float(v) / n_running for k, v in running.items()}
                    if not all(math.isfinite(v) for v in logs.values()):
                        raise NonFiniteLoss(f"non-finite training loss at step {state.step}: {logs}")
                    logs["lr"] = scheduler.get_last_lr()[0]
                    callbacks.on_log(state.step, logs)
                    running, n_running = {}, 0
                if state.step % settings.eval_steps == 0 or last:
                    metrics = evaluate(model, val_loader, device, settings.precision)
                    model.train()
                    record_eval(model, state, state.step, metrics, settings.metric)
                    state.optimizer = optimizer.state_dict()
                    state.scheduler = scheduler.state_dict()
                    state.rng = capture_rng()
                    callbacks.on_eval(state.step, metrics, state)
                if last:
                    break
            epoch, skip = epoch + 1, 0

    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    # The learning rate of step k is the scheduler's base rate times its lambda at k (it steps
    # after the optimizer), so this is the decay AdamW applied up to the kept checkpoint.
    lam, base = scheduler.lr_lambdas[0], scheduler.base_lrs[0]
    decay = vocab.decay_factor((base * lam(k) for k in range(state.best_step)), settings.weight_decay)
    return TrainResult(state.best_score, state.best_step, state.step, state.history, decay)


def record_eval(model: torch.nn.Module, state: TrainState, step: int, metrics: dict, metric: str) -> None:
    state.history.append({"step": step, **metrics})
    if metrics[metric] > state.best_score:
        state.best_score, state.best_step = metrics[metric], step
        # A CPU copy: the live weights keep training on the device.
        state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# How `make_step` compiles: one graph for every batch shape. (The bench's `compile-buckets` item
# tries static graphs per bucketed length instead; docs/performance.md has what it measured.)
COMPILE_OPTIONS: dict = {"dynamic": True}


def make_step(model, distiller: Distiller | None, device: torch.device, precision: str, compile: bool = False):
    """Return batch -> dict of loss terms ('total' is what is minimised).

    With `compile`, the forward passes go through `torch.compile(dynamic=True)` (one graph for
    every batch length and size; the modules and their weights are shared with the originals).
    Compilation costs minutes before the first step, so it only pays on long runs.
    """
    student = torch.compile(model, **COMPILE_OPTIONS) if compile else model
    if distiller is None:
        def nonkd_step(batch):
            batch = to_device(batch, device)
            with autocast_for(device, precision):
                logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = F.cross_entropy(logits.float(), batch["labels"])
            return {"total": loss}
        return nonkd_step

    from kdtune.training.losses import kd_losses

    from kdtune.models.attention import attention_by_layer

    w = distiller.weights
    # Ask the models only for what the loss reads: attention maps are (layers x B x H x L x L)
    # tensors, skipped when w_att = 0; hidden states when both w_hid and w_emb are 0.
    need_att = w.att > 0
    need_hid = w.hid > 0 or w.emb > 0
    teacher = torch.compile(distiller.teacher, **COMPILE_OPTIONS) if compile else distiller.teacher
    cache = distiller.teacher_cache

    def kd_step(batch):
        rows = batch.get("row")  # on the host: the cache is indexed there
        batch = to_device(batch, device)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        flags = {"output_hidden_states": need_hid, "output_attentions": need_att}
        with autocast_for(device, precision):
            if cache is not None:
                t_out = cache.outputs(rows, inputs["attention_mask"], device)
            else:
                t_out = teacher_outputs(teacher, inputs, flags)
                if need_att:  # the teacher hands back only the layers the loss reads
                    t_out.attentions = attention_by_layer(distiller.teacher, t_out.attentions)
            s_out = student(**inputs, **flags)
            losses = kd_losses(
                s_out, t_out, batch["labels"], batch["attention_mask"], distiller.layer_map,
                w, distiller.hidden_match, distiller.head_map,
            )
        return losses

    return kd_step


@torch.inference_mode()
def teacher_outputs(teacher, inputs: dict, flags: dict):
    """The teacher's forward pass. Under inference_mode: no autograd graph, no saved activations
    and no version counters, since its outputs are constants of the loss (kdtune.training.losses)."""
    return teacher(**inputs, **flags)


@torch.inference_mode()
def predict(model, loader, device: torch.device, precision: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels over `loader`, in loader order."""
    was_training = model.training
    model.eval()
    preds, golds = [], []
    for batch in loader:
        batch = to_device(batch, device)
        with autocast_for(device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        preds.append(logits.argmax(-1).cpu())
        golds.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(preds).numpy(), torch.cat(golds).numpy()


def evaluate(model, loader, device: torch.device, precision: str = "auto", languages=None) -> dict[str, Any]:
    preds, golds = predict(model, loader, device, precision)
    return scores(preds, golds, languages)
