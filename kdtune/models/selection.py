"""Uniform element selection (Xu et al. 2024, "Initializing Models with Larger Ones").

A dimension of size `src` shrinks to `dst` by keeping the evenly spaced elements
``idx_i = floor(i * src / dst)`` for ``i = 0 .. dst - 1``. The indices are strictly increasing and
always inside ``0 .. src - 1``, also when `dst` does not divide `src` (the reference
implementation steps by ``src // dst`` and then slices, which breaks for non-divisible sizes).
For 4 -> 2 this keeps the 1st and 3rd slices, as in the paper's example.

Attention projections are head-structured: their output (Q/K/V) or input (O) dimension is
``heads x head_dim``. Two named ways to shrink it (`HEAD_MODES`):

- ``keep_heads``: the student keeps the teacher's head count; inside every teacher head the
  head_dim shrinks by uniform selection (768 -> 384 with 12 heads: 12 heads of 32, and teacher
  head h keeps its elements ``h*64 + floor(i*64/32)``). Student head h comes from teacher head h.
- ``keep_head_dim``: the student keeps the head size and keeps whole heads, chosen by uniform
  selection over heads (768 -> 384 with 12 heads of 64: 6 heads of 64, teacher heads 0,2,4,6,8,10).

`head_map` says which teacher head each student head comes from; the KD attention loss uses the
same map, so the copied weights and the attention targets agree.
"""

from __future__ import annotations

import torch

from kdtune.config import HEAD_MODES
from kdtune.errors import UsageError


def uniform_indices(src: int, dst: int) -> torch.Tensor:
    """Evenly spaced indices ``floor(i * src / dst)``, ``i < dst`` (a LongTensor of length dst)."""
    if not 0 < dst <= src:
        raise ValueError(f"cannot select {dst} of {src} elements (need 0 < dst <= src)")
    return torch.arange(dst, dtype=torch.long) * src // dst


def check_head_mode(head_mode: str) -> None:
    if head_mode not in HEAD_MODES:
        raise UsageError(f"head_mode: unknown value {head_mode!r}; allowed: {', '.join(HEAD_MODES)}")


def student_heads(teacher_hidden: int, teacher_heads: int, student_hidden: int, head_mode: str) -> int:
    """Number of attention heads of a student of width `student_hidden` (UsageError if illegal)."""
    check_head_mode(head_mode)
    if teacher_hidden % teacher_heads:
        raise UsageError(f"teacher hidden size {teacher_hidden} is not divisible by its {teacher_heads} heads")
    head_dim = teacher_hidden // teacher_heads
    if not 0 < student_hidden <= teacher_hidden:
        raise UsageError(f"hidden: {student_hidden} is not allowed; use 1..{teacher_hidden} (the teacher's hidden size)")
    if head_mode == "keep_heads":
        if student_hidden % teacher_heads:
            raise UsageError(
                f"hidden: {student_hidden} is not a multiple of the teacher's {teacher_heads} heads "
                f"(head_mode keep_heads); allowed: multiples of {teacher_heads} up to {teacher_hidden}"
            )
        return teacher_heads
    if student_hidden % head_dim:
        raise UsageError(
            f"hidden: {student_hidden} is not a multiple of the teacher's head size {head_dim} "
            f"(head_mode keep_head_dim); allowed: multiples of {head_dim} up to {teacher_hidden}"
        )
    return student_hidden // head_dim


def head_map(teacher_heads: int, student_heads_: int) -> list[int]:
    """Teacher head index for each student head: identity when equal, else uniform selection."""
    return uniform_indices(teacher_heads, student_heads_).tolist()


def attention_indices(teacher_hidden: int, teacher_heads: int, student_hidden: int, head_mode: str) -> torch.Tensor:
    """Indices into a teacher attention dimension (heads x head_dim) for the student's one."""
    s_heads = student_heads(teacher_hidden, teacher_heads, student_hidden, head_mode)
    t_dim = teacher_hidden // teacher_heads
    s_dim = student_hidden // s_heads
    heads = uniform_indices(teacher_heads, s_heads)  # which teacher heads
    within = uniform_indices(t_dim, s_dim)  # which elements inside each kept head
    return (heads[:, None] * t_dim + within[None, :]).reshape(-1)
