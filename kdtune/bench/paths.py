"""The two KD training paths the bench times, on the same student, teacher, rows and batch size.

kdtune's path is `kdtune.training.loop.train` itself, untouched: the trial's own loaders (dynamic padding,
length-grouped batches), `make_step` (teacher under `inference_mode`, only the outputs the loss
needs, or its outputs read from the teacher cache when the distiller has one), the optimizer and
schedule. It runs ``repeats + 1`` groups of ``group`` steps, logging
once per group; the timestamps of those logs cut the run into samples, the first of which is
warm-up and not quoted. With ``group = 50`` and at least 200 batches per epoch, a sample is
exactly one of `LengthGroupedSampler`'s mega-batches (50 batches sorted by length, drawn at
random): the unit whose padding is representative of a full-size run. A thin wrapper around the loader records each batch's real lengths, in
the order `train` consumes them, so every epoch's examples, tokens and FLOPs are known exactly.

The reference path is written the way TinyBERT's code does it (`reference_kd_step`): every batch
padded to ``pad_to`` (128), fp32 with full-precision matmuls, eager attention, the teacher run as
a plain forward with trainable parameters (autograd records its graph) and its outputs detached
afterwards, the loss a Python loop over layer pairs with unmasked MSE, and the default AdamW.
Its cost does not depend on which rows a batch holds (all are 128 long), so it is timed over
``steps`` batches per sample, drawn at random from the same rows.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdtune.bench.flops import EncoderShape, kd_step_flops
from kdtune.bench.timing import Spread, spread, sync


@dataclass
class PathResult:
    """Per timed sample: examples/s and real-token FLOP/s; totals over the timed samples."""

    examples_per_s: Spread
    flops_per_s: Spread
    step_seconds: Spread
    examples: int
    steps: int
    real_tokens: int
    padded_tokens: int
    tokens_per_batch: float  # padded tokens per batch (the M of the matmuls it runs)

    @property
    def padding_efficiency(self) -> float:
        return self.real_tokens / self.padded_tokens

    def to_dict(self) -> dict:
        return {
            "examples_per_s": self.examples_per_s.to_dict(),
            "flops_per_s": self.flops_per_s.to_dict(),
            "step_seconds": self.step_seconds.to_dict(),
            "examples": self.examples, "steps": self.steps, "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens, "tokens_per_batch": self.tokens_per_batch,
            "padding_efficiency": self.padding_efficiency,
        }


@dataclass
class Batches:
    """What a run of batches held: real lengths per batch and padded size per batch."""

    lengths: list[list[int]] = dataclasses.field(default_factory=list)
    padded: list[int] = dataclasses.field(default_factory=list)

    def add(self, attention_mask: torch.Tensor) -> None:
        self.lengths.append(attention_mask.sum(-1).tolist())
        self.padded.append(attention_mask.numel())


class RecordingLoader:
    """Wraps one epoch's loader; records each batch as it is handed to the training loop."""

    def __init__(self, loader, record: Batches):
        self.loader, self.record = loader, record

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.record.add(batch["attention_mask"])
            yield batch


def summarise(batches: Batches, cuts: list[tuple[int, float]], student: EncoderShape,
              teacher: EncoderShape, linear_match: bool, with_teacher: bool = True) -> PathResult:
    """Samples between consecutive (step, time) cuts: step s covers batches [prev, s)."""
    ex, fl, st = [], [], []
    examples = steps = real = padded = 0
    for (s0, t0), (s1, t1) in zip(cuts, cuts[1:]):
        lengths = [n for b in batches.lengths[s0:s1] for n in b]
        dt = t1 - t0
        flops = sum(kd_step_flops(student, teacher, b, linear_match, with_teacher) for b in batches.lengths[s0:s1])
        ex.append(len(lengths) / dt)
        fl.append(flops / dt)
        st.append(dt / (s1 - s0))
        examples += len(lengths)
        steps += s1 - s0
        real += sum(lengths)
        padded += sum(batches.padded[s0:s1])
    return PathResult(spread(ex), spread(fl), spread(st), examples, steps, real, padded, padded / steps)


def kdtune_path(built, device: torch.device, repeats: int, group: int = 50, compile: bool = False) -> PathResult:
    """Time `kdtune.training.loop.train` on the built trial: ``repeats`` samples of ``group`` steps after
    one warm-up group."""
    from kdtune.training.loop import Callbacks, TrainSettings, train

    record = Batches()
    cuts: list[tuple[int, float]] = []

    def on_log(step: int, logs: dict) -> None:
        sync(device)
        cuts.append((step, time.perf_counter()))

    settings = TrainSettings.from_fields(
        built.trial, epochs=10**6, max_steps=(repeats + 1) * group, log_steps=group,
        eval_steps=10**9,  # no evaluation inside the timed samples (one at the very end)
    )
    if compile:
        settings = dataclasses.replace(settings, compile=True)
    train(built.student, lambda epoch: RecordingLoader(built.inputs.train_loader(epoch), record),
          built.inputs.validation.loader, settings, device, distiller=built.distiller,
          callbacks=Callbacks(on_log=on_log))
    d = built.distiller
    return summarise(record, cuts, EncoderShape.of(built.student), EncoderShape.of(d.teacher),
                     d.hidden_match.used == "linear", with_teacher=d.teacher_cache is None)


# --- the TinyBERT-style reference ----------------------------------------------------------------


def padded_rows(rows, pad_id: int, pad_to: int) -> torch.utils.data.TensorDataset:
    """All rows padded to `pad_to` up front, as TinyBERT's feature conversion does."""
    ids = torch.full((len(rows), pad_to), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), pad_to), dtype=torch.long)
    for i, row in enumerate(rows["input_ids"]):
        row = row[:pad_to]
        ids[i, : len(row)] = torch.as_tensor(row)
        mask[i, : len(row)] = 1
    labels = torch.as_tensor(rows["label"], dtype=torch.long)
    return torch.utils.data.TensorDataset(ids, mask, labels)


def reference_kd_step(student, teacher, ids, mask, labels, layer_map: list[int], hidden_match):
    """One KD loss as TinyBERT's task_distill/general_distill compute it (all five terms)."""
    s_out = student(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    t_out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    teacher_atts = [a.detach() for a in t_out.attentions]  # TinyBERT: "speedup 1.5x"
    teacher_reps = [h.detach() for h in t_out.hidden_states]
    teacher_logits = t_out.logits.detach()
    att_loss = 0.0
    for j, student_att in enumerate(s_out.attentions):
        teacher_att = teacher_atts[layer_map[j]]
        student_att = torch.where(student_att <= -1e2, torch.zeros_like(student_att), student_att)
        teacher_att = torch.where(teacher_att <= -1e2, torch.zeros_like(teacher_att), teacher_att)
        att_loss = att_loss + F.mse_loss(student_att, teacher_att)
    rep_loss = 0.0
    new_teacher_reps = [teacher_reps[0]] + [teacher_reps[k + 1] for k in layer_map]
    for student_rep, teacher_rep in zip(s_out.hidden_states, new_teacher_reps):
        student_rep, teacher_rep = hidden_match(student_rep, teacher_rep)
        rep_loss = rep_loss + F.mse_loss(student_rep, teacher_rep)
    pred_loss = F.mse_loss(s_out.logits, teacher_logits)
    clf_loss = F.cross_entropy(s_out.logits, labels)
    return att_loss + rep_loss + pred_loss + clf_loss


@contextlib.contextmanager
def full_precision_matmul():
    """fp32 products at full precision (no TF32), whatever the process set before."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def reference_path(student, teacher, rows, pad_id: int, pad_to: int, layer_map: list[int], hidden_match,
                   batch_size: int, device: torch.device, repeats: int, steps: int, lr: float,
                   seed: int) -> PathResult:
    """Time the TinyBERT-style loop: ``repeats`` samples of ``steps`` steps after one warm-up sample."""
    student = copy.deepcopy(student).to(device).train()
    student.set_attn_implementation("eager")  # TinyBERT reads transformers' own attention maps
    attention = teacher.config._attn_implementation
    teacher.set_attn_implementation("eager")
    teacher.to(device).eval().requires_grad_(True)  # TinyBERT's teacher is not frozen, only detached
    hidden_match = hidden_match.to(device)
    data = padded_rows(rows, pad_id, pad_to)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, sampler=torch.utils.data.RandomSampler(data, generator=generator)
    )
    params = list(student.parameters()) + [p for p in hidden_match.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    record = Batches()
    cuts: list[tuple[int, float]] = []
    step = 0
    try:
        with full_precision_matmul():
            while len(cuts) < repeats + 2:
                for ids, mask, labels in loader:
                    if step % steps == 0:
                        sync(device)
                        cuts.append((step, time.perf_counter()))
                        if len(cuts) == repeats + 2:
                            break
                    record.add(mask)  # on the host: no device sync
                    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
                    loss = reference_kd_step(student, teacher, ids, mask, labels, layer_map, hidden_match)
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
                    step += 1
    finally:
        teacher.requires_grad_(False)
        teacher.set_attn_implementation(attention)  # the read layers are kept on the modules
    return summarise(record, cuts[1:], EncoderShape.of(student), EncoderShape.of(teacher),
                     hidden_match.used == "linear")
