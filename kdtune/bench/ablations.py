"""The fast path, one item at a time: kdtune's KD path re-timed with a single item switched off.

Each variant is a context manager that changes one thing for the duration of one `kdtune_path`
run, on the same built trial (the student's initial weights are restored before each run):

- ``no-length-grouping``: random batches (still padded per batch to their longest row);
- ``pad-to-max``: every batch padded to ``max_length`` (128), as the reference does;
- ``plain-teacher``: the teacher's forward as TinyBERT runs it: parameters that require grad,
  a plain forward (autograd records the graph and keeps activations), outputs detached;
- ``no-grad-teacher``: the teacher under ``torch.no_grad`` instead of ``inference_mode``;
- ``unfused-adamw``: torch's default AdamW implementation instead of the fused kernel;
- ``loop-loss``: the KD loss computed one layer at a time (same values, see `kd_losses_loop`);
- ``eager-attention``: transformers' eager attention in every layer of both models (maps after
  dropout, every teacher layer's map computed): the path before `kdtune.models.attention`;
- ``one-thread``: one torch thread instead of one per CPU;
- ``compile``: the opposite direction, `torch.compile` switched on (minutes of compilation on
  CPU; only when asked for by name);
- ``compile-buckets``: `torch.compile` with static shapes (one graph per shape, automatic dynamic
  shapes off) and every batch padded up to a multiple of `BUCKET` tokens, so dynamic padding
  needs a handful of graphs instead of recompiling per length; on CUDA in ``reduce-overhead``
  mode (CUDA graphs). Only by name;
- ``fused-loss``: `kdtune.training.losses.kd_losses` compiled on its own, which fuses its element-wise
  terms into a few kernels. Only by name.

Variants patch attributes of `kdtune.training.loop` / `kdtune.training.losses` (and, for compile-buckets,
torch._dynamo's scoped `config.patch`) and restore them on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F

VARIANTS = ("no-length-grouping", "pad-to-max", "plain-teacher", "no-grad-teacher", "unfused-adamw",
            "loop-loss", "eager-attention", "one-thread", "compile", "compile-buckets", "fused-loss")
SWITCHED_ON = ("compile", "compile-buckets", "fused-loss")  # slow to compile: only when named
COMPILED = ("compile", "compile-buckets")  # run_bench compiles the models for these
DEFAULT = tuple(v for v in VARIANTS if v not in SWITCHED_ON)
BUCKET = 16  # compile-buckets: lengths padded up to a multiple of this


@contextlib.contextmanager
def patched(module, name: str, value) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


class PaddedLoader:
    """One epoch's batches, each padded on the right to `pad_to` positions (or, with `multiple`,
    up to the next multiple of it, at most `pad_to`)."""

    def __init__(self, loader, pad_to: int, pad_id: int, multiple: int | None = None):
        self.loader, self.pad_to, self.pad_id, self.multiple = loader, pad_to, pad_id, multiple

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            length = batch["input_ids"].shape[1]
            target = min(self.pad_to, -(-length // self.multiple) * self.multiple) if self.multiple else self.pad_to
            extra = target - length
            yield {**batch, "input_ids": F.pad(batch["input_ids"], (0, extra), value=self.pad_id),
                   "attention_mask": F.pad(batch["attention_mask"], (0, extra), value=0)}


def variant(name: str, built, prepared, pad_to: int):
    """(context manager, built trial to time) for one variant."""
    import kdtune.training.losses
    import kdtune.training.loop
    from kdtune.training.inputs import build_inputs

    if name == "no-length-grouping":
        trial = dataclasses.replace(prepared.trial, group_by_length=False)
        inputs = build_inputs(prepared.splits, built.tokenizer, trial, test=False)
        return contextlib.nullcontext(), dataclasses.replace(
            built, inputs=dataclasses.replace(built.inputs, train_loader=inputs.train_loader))
    if name == "pad-to-max":
        source, pad_id = built.inputs.train_loader, built.tokenizer.pad_token_id
        loader = lambda epoch: PaddedLoader(source(epoch), pad_to, pad_id)  # noqa: E731
        return contextlib.nullcontext(), dataclasses.replace(
            built, inputs=dataclasses.replace(built.inputs, train_loader=loader))
    if name == "plain-teacher":
        def plain(teacher, inputs, flags):
            teacher.requires_grad_(True)  # `train` froze it; TinyBERT's teacher is not frozen
            out = teacher(**inputs, **flags)
            return type(out)(**{k: _detach(v) for k, v in out.items()})

        return _restoring_teacher(built, patched(kdtune.training.loop, "teacher_outputs", plain)), built
    if name == "no-grad-teacher":
        def no_grad(teacher, inputs, flags):
            with torch.no_grad():
                return teacher(**inputs, **flags)

        return patched(kdtune.training.loop, "teacher_outputs", no_grad), built
    if name == "unfused-adamw":
        def unfused(params, settings, device):
            return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

        return patched(kdtune.training.loop, "make_optimizer", unfused), built
    if name == "loop-loss":
        return patched(kdtune.training.losses, "kd_losses", kd_losses_loop), built
    if name == "eager-attention":
        return _eager_attention(built.student, built.distiller.teacher), built
    if name == "one-thread":
        return _threads(1), built
    if name == "compile":
        return contextlib.nullcontext(), built  # run_bench passes compile=True for this one
    if name == "compile-buckets":
        source, pad_id = built.inputs.train_loader, built.tokenizer.pad_token_id
        loader = lambda epoch: PaddedLoader(source(epoch), pad_to, pad_id, BUCKET)  # noqa: E731
        return _static_compile(), dataclasses.replace(built, inputs=dataclasses.replace(built.inputs, train_loader=loader))
    if name == "fused-loss":
        return patched(kdtune.training.losses, "kd_losses", torch.compile(kdtune.training.losses.kd_losses, dynamic=True)), built
    raise ValueError(f"unknown variant {name!r}")


def _detach(value):
    if isinstance(value, tuple):
        return tuple(v.detach() for v in value)
    return value.detach() if torch.is_tensor(value) else value


@contextlib.contextmanager
def _restoring_teacher(built, inner):
    try:
        with inner:
            yield
    finally:
        built.distiller.teacher.requires_grad_(False)


@contextlib.contextmanager
def _eager_attention(*models):
    before = [m.config._attn_implementation for m in models]
    for m in models:
        m.set_attn_implementation("eager")
    try:
        yield
    finally:
        for m, name in zip(models, before):
            m.set_attn_implementation(name)  # the read layers stay set on the modules


@contextlib.contextmanager
def _static_compile():
    import kdtune.training.loop

    mode = "reduce-overhead" if torch.cuda.is_available() else "default"  # CUDA graphs on a GPU
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False, cache_size_limit=64), \
            patched(kdtune.training.loop, "COMPILE_OPTIONS", {"dynamic": False, "mode": mode}):
        yield


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def kd_losses_loop(student_out, teacher_out, labels, attention_mask, layer_map, weights, hidden_match,
                   head_map=None) -> dict[str, torch.Tensor]:
    """`kdtune.training.losses.kd_losses`, one layer at a time instead of stacked (same definitions)."""
    from kdtune.training.losses import TERMS, nonkd_loss, weighted_total
    from kdtune.models.selection import head_map as select_heads

    logits = student_out.logits
    out = {name: logits.new_zeros((), dtype=torch.float32) for name in TERMS}
    mask = attention_mask.to(logits.device, torch.float32)
    if weights.att:
        pair = mask[:, :, None] * mask[:, None, :]
        hs, ht = student_out.attentions[0].shape[1], teacher_out.attentions[layer_map[0]].shape[1]
        heads = head_map if head_map is not None else select_heads(ht, hs)
        for j, s in enumerate(student_out.attentions):
            t = teacher_out.attentions[layer_map[j]]
            if heads != list(range(ht)):
                t = t[:, heads]
            d = (s - t).float()
            out["att"] = out["att"] + (d * d * pair[:, None]).sum()
        out["att"] = out["att"] / (pair.sum() * len(layer_map) * hs)
    if hidden_match.active:
        sh, th = student_out.hidden_states, teacher_out.hidden_states
        width = None
        for j in range(len(layer_map) + 1):
            s, t = hidden_match(sh[j], th[0] if j == 0 else th[layer_map[j - 1] + 1])
            width = s.shape[-1]
            d = (s - t).float()
            term = ((d * d).sum(-1) * mask).sum()
            if j == 0:
                out["emb"] = term / (mask.sum() * width)
            else:
                out["hid"] = out["hid"] + term
        out["hid"] = out["hid"] / (mask.sum() * width * len(layer_map))
        out["emb"] = out["emb"] * bool(weights.emb)
        out["hid"] = out["hid"] * bool(weights.hid)
    if weights.pred:
        d = (logits - teacher_out.logits).float()
        out["pred"] = (d * d).mean()
    if weights.clf:
        out["clf"] = nonkd_loss(logits, labels)
    out["total"] = weighted_total(out, weights)
    return out
