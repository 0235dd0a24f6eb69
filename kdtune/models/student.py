"""Build a student encoder classifier from a teacher, a pretrained base, or from scratch.

The paper (section 2.2) initializes the student DistilBERT-style: copy the embeddings, the
classification layers and every second encoder layer; when the student is narrower, select evenly
spaced elements of every teacher tensor (Xu et al. 2024). Here:

- ``init="teacher"``: embeddings, mapped layers, pooler (if the student has one) and the
  classifier head come from the fine-tuned teacher.
- ``init="base"``: the same from the pretrained base model (any head type, or a state dict); the
  classifier head is fresh (the base has none); the pooler is copied when the base has one.
- ``init="scratch"``: every tensor is fresh.

"Fresh" tensors are the student's own initialization (transformers' `_init_weights`) drawn under
``torch.manual_seed(seed)`` inside a forked RNG, so one seed always gives the same weights and the
caller's global RNG is untouched. Layer ``j`` of the student takes teacher layer ``layer_map[j]``
(0-based; `kdtune.models.layer_map`). Shrinking dimensions use `kdtune.models.selection`:
hidden and intermediate by uniform selection, attention dimensions by `head_mode`.

The student is created with eager attention; a KD trial switches it (and the teacher) to
`kdtune.models.attention`, which hands back the maps before attention dropout. transformers does
not save the attention choice in config.json.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from collections.abc import Sequence

import torch

from kdtune.config import INITS
from kdtune.errors import UsageError
from kdtune.models.arch import ATTN, HIDDEN, INTER, SHRINKING_ROLES, ArchSpec, TensorInfo, arch_for
from kdtune.models.layer_map import resolve_layer_map
from kdtune.models.selection import attention_indices, check_head_mode, student_heads, uniform_indices


@dataclass
class CopyEntry:
    """How one student tensor was obtained: ``copied`` (exact), ``selected`` or ``fresh``."""

    how: str
    shape: tuple[int, ...]
    source: str | None = None
    source_shape: tuple[int, ...] | None = None


@dataclass
class CopyReport:
    """Per student state-dict key, where its values came from; plus source keys left unused."""

    init: str
    layer_map: list[int]
    head_mode: str
    seed: int
    teacher_layers: int
    student_layers: int
    teacher_hidden: int
    student_hidden: int
    entries: dict[str, CopyEntry] = field(default_factory=dict)
    unused_source_keys: list[str] = field(default_factory=list)

    def check(self, student_keys: Sequence[str]) -> None:
        """Raise unless every student key has exactly one entry (and no entry is extra)."""
        missing = [k for k in student_keys if k not in self.entries]
        extra = [k for k in self.entries if k not in set(student_keys)]
        if missing or extra:
            raise RuntimeError(f"copy report does not match the student: unaccounted {missing}, extra {extra}")

    def counts(self) -> dict[str, int]:
        out = {"copied": 0, "selected": 0, "fresh": 0}
        for e in self.entries.values():
            out[e.how] += 1
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = self.counts()
        return d

    def summary(self) -> str:
        c = self.counts()
        fresh = sorted({_group(k) for k, e in self.entries.items() if e.how == "fresh"})
        unused = sorted({_group(k) for k in self.unused_source_keys})
        lines = [
            f"init={self.init} layers {self.teacher_layers}->{self.student_layers} "
            f"layer_map={self.layer_map} hidden {self.teacher_hidden}->{self.student_hidden} "
            f"head_mode={self.head_mode} seed={self.seed}",
            f"tensors: {c['copied']} copied, {c['selected']} selected, {c['fresh']} fresh",
            f"fresh: {', '.join(fresh) if fresh else '-'}",
            f"unused source tensors: {len(self.unused_source_keys)}"
            + (f" ({', '.join(unused)})" if unused else ""),
        ]
        return "\n".join(lines)


def _group(key: str) -> str:
    """Shorten a key for the summary: 'roberta.encoder.layer.3.x.y' -> 'encoder.layer.3'."""
    parts = key.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        return ".".join(parts[: i + 2])
    return ".".join(parts[:-1]) or key


def student_config(teacher_config, layers: int | None = None, hidden: int | None = None, head_mode: str = "keep_heads",
                   hidden_dropout: float | None = None, attention_dropout: float | None = None):
    """A copy of the teacher's config, shrunk to `layers` and `hidden` (defaults: half the
    teacher's layers, rounded down but at least 1, and the teacher's width).

    The intermediate size scales with the width (``round(intermediate * hidden / teacher_hidden)``);
    the head count follows `head_mode`; labels (num_labels, id2label, label2id) are kept.
    `hidden_dropout` (embeddings, layer outputs and, unless the config sets its own, the
    classifier) and `attention_dropout` replace the teacher's values when given.
    """
    arch_for(teacher_config)
    t_layers = teacher_config.num_hidden_layers
    t_hidden = teacher_config.hidden_size
    layers = max(1, t_layers // 2) if layers is None else layers
    hidden = t_hidden if hidden is None else hidden
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= t_layers:
        raise UsageError(f"layers: {layers!r} is not allowed; use an integer in 1..{t_layers} (the teacher's layers)")
    if isinstance(hidden, bool) or not isinstance(hidden, int):
        raise UsageError(f"hidden: {hidden!r} is not an integer; use 1..{t_hidden}")
    heads = student_heads(t_hidden, teacher_config.num_attention_heads, hidden, head_mode)
    cfg = copy.deepcopy(teacher_config)
    cfg.num_hidden_layers = layers
    cfg.hidden_size = hidden
    cfg.num_attention_heads = heads
    cfg.intermediate_size = max(1, round(Fraction(teacher_config.intermediate_size * hidden, t_hidden)))
    if getattr(cfg, "head_dim", None) is not None:
        cfg.head_dim = hidden // heads
    if hidden_dropout is not None:
        cfg.hidden_dropout_prob = hidden_dropout
    if attention_dropout is not None:
        cfg.attention_probs_dropout_prob = attention_dropout
    cfg._attn_implementation = "eager"
    return cfg


def _fresh_student(cfg, seed: int):
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")


def _source(init: str, teacher, base, spec: ArchSpec):
    """(state dict, config for head counts, name for messages) of the copy source."""
    if init == "teacher":
        return teacher.state_dict(), teacher.config, "teacher"
    if base is None:
        raise UsageError("base: init=base needs a base model (--base DIR)")
    if isinstance(base, dict):
        return base, teacher.config, "base"
    if arch_for(base.config) is not spec:
        raise UsageError(
            f"base: model_type {base.config.model_type!r} does not match the teacher's {teacher.config.model_type!r}"
        )
    return base.state_dict(), base.config, "base"


def _source_layers(sd: dict, spec: ArchSpec) -> int:
    idx = [i.layer for i in map(spec.parse, sd) if i is not None and i.layer is not None]
    return max(idx) + 1 if idx else 0


def build_student(
    init: str,
    teacher,
    base=None,
    layers: int | None = None,
    hidden: int | None = None,
    layer_map: str | Sequence[int] = "paper",
    head_mode: str = "keep_heads",
    seed: int = 0,
    hidden_dropout: float | None = None,
    attention_dropout: float | None = None,
):
    """Return ``(student, CopyReport)``; see the module docstring for what each `init` copies.

    `teacher` (a fine-tuned sequence classifier) defines the architecture and labels in every
    mode; `base` (model of any head type, or a state dict) is read only for ``init="base"``.
    """
    if init not in INITS:
        raise UsageError(f"init: unknown value {init!r}; allowed: {', '.join(INITS)}")
    if teacher is None:
        raise UsageError("teacher: a teacher model is required (it defines the architecture and labels)")
    check_head_mode(head_mode)
    spec = arch_for(teacher.config)
    cfg = student_config(teacher.config, layers, hidden, head_mode, hidden_dropout, attention_dropout)
    lmap = resolve_layer_map(layer_map, teacher.config.num_hidden_layers, cfg.num_hidden_layers)
    student = _fresh_student(cfg, seed)
    report = CopyReport(
        init=init, layer_map=lmap, head_mode=head_mode, seed=seed,
        teacher_layers=teacher.config.num_hidden_layers, student_layers=cfg.num_hidden_layers,
        teacher_hidden=teacher.config.hidden_size, student_hidden=cfg.hidden_size,
    )
    dst_sd = student.state_dict()
    if init == "scratch":
        for key, t in dst_sd.items():
            if spec.parse(key) is None:
                raise RuntimeError(f"student key {key!r} is not known to the {spec.name} spec")
            report.entries[key] = CopyEntry("fresh", tuple(t.shape))
        report.check(list(dst_sd))
        return student, report

    src_sd, src_cfg, src_name = _source(init, teacher, base, spec)
    n_src = _source_layers(src_sd, spec)
    if n_src != teacher.config.num_hidden_layers:
        raise UsageError(f"{src_name}: has {n_src} encoder layers, the teacher has {teacher.config.num_hidden_layers}")
    src_prefixed = spec.has_prefix(src_sd)
    new: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, dst in dst_sd.items():
        info = spec.parse(key)
        if info is None:
            raise RuntimeError(f"student key {key!r} is not known to the {spec.name} spec")
        if info.part == "classifier" and init != "teacher":
            report.entries[key] = CopyEntry("fresh", tuple(dst.shape))
            continue
        src_info = info if info.layer is None else TensorInfo(info.part, lmap[info.layer], info.rest, info.roles)
        src_key = spec.key(src_info, src_prefixed)
        if src_key not in src_sd:
            if info.part == "pooler":  # e.g. an MLM base has no pooler: keep the fresh one
                report.entries[key] = CopyEntry("fresh", tuple(dst.shape))
                continue
            raise UsageError(f"{src_name}: has no tensor {src_key!r} needed for student {key!r}")
        src = src_sd[src_key]
        out = _select(src, dst.shape, info, src_cfg, cfg, head_mode, src_name, src_key)
        used.add(src_key)
        how = "copied" if tuple(src.shape) == tuple(dst.shape) else "selected"
        report.entries[key] = CopyEntry(how, tuple(dst.shape), src_key, tuple(src.shape))
        new[key] = out.detach().to(device=dst.device, dtype=dst.dtype)
    report.unused_source_keys = sorted(set(src_sd) - used)
    report.check(list(dst_sd))
    student.load_state_dict({**dst_sd, **new}, strict=True)
    return student, report


def _select(src: torch.Tensor, shape, info: TensorInfo, src_cfg, dst_cfg, head_mode, src_name, src_key) -> torch.Tensor:
    """`src` indexed along every dimension that shrinks, by the dimension's role."""
    if src.dim() != len(shape) or len(info.roles) != len(shape):
        raise UsageError(f"{src_name}: tensor {src_key!r} has shape {tuple(src.shape)}, expected {len(shape)} dimensions")
    out = src
    for d, role in enumerate(info.roles):
        s, t = src.shape[d], shape[d]
        if s == t:
            continue
        if role not in SHRINKING_ROLES or t > s:
            raise UsageError(
                f"{src_name}: tensor {src_key!r} has shape {tuple(src.shape)}, the student needs {tuple(shape)} ({role} cannot change)"
            )
        if role == ATTN:
            # The source's head layout must give the student's head count (a base model with
            # another head count than the teacher would not).
            if student_heads(s, src_cfg.num_attention_heads, t, head_mode) != dst_cfg.num_attention_heads:
                raise UsageError(f"{src_name}: attention heads of {src_key!r} do not match the student's {dst_cfg.num_attention_heads} heads")
            idx = attention_indices(s, src_cfg.num_attention_heads, t, head_mode)
        else:
            assert role in (HIDDEN, INTER)
            idx = uniform_indices(s, t)
        out = out.index_select(d, idx.to(out.device))
    return out
