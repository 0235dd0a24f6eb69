"""Analytic FLOP count of a KD training step, on real (non-pad) tokens only.

Conventions (one multiply-add = 2 FLOPs; only matrix products are counted, as in
`torch.utils.flop_counter.FlopCounterMode`; biases, LayerNorm, GELU, softmax, dropout and the
losses are elementwise work and are not counted, which is < 1% at these sizes):

For an encoder of ``L`` layers, hidden size ``d``, intermediate size ``f``, and a sequence of
``n`` real tokens, the forward pass costs

    F(n) = L * (2 * P * n + 4 * d * n^2) + 2 * C

- ``P = 4 d^2 + 2 d f`` is the non-embedding parameter count of one layer's weight matrices
  (query, key, value, attention output; FFN up and down), so ``2 * P * n`` is the dense work;
- ``4 * d * n^2`` is attention: Q K^T and (probabilities) V over all heads, each ``2 n^2 d``;
- ``C = d^2 + d * labels`` is XLM-R's classification head (dense + out_proj), applied to the
  ``<s>`` token only, once per sequence.

Embedding lookups cost no FLOPs. The backward pass costs twice the forward (one product for the
gradient of the input, one for the gradient of the weight), so a KD step costs

    KD(batch) = sum over sequences of  F_teacher(n) + 3 * F_student(n)  [+ 6 * H * d_s * d_t * n]

where the bracket is the learned width projection (``hidden_match="linear"``; ``H`` = student
layers + 1 hidden states). ``n`` is each sequence's REAL length: padding positions cost time but
count nothing, so padding waste lowers the achieved FLOP/s and the MFU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOP count needs from an XLM-R/BERT-style sequence classifier."""

    layers: int
    hidden: int
    intermediate: int
    labels: int

    @classmethod
    def of(cls, model) -> "EncoderShape":
        c = model.config
        return cls(c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_labels)

    @property
    def layer_params(self) -> int:
        """Weight-matrix parameters of one encoder layer (the ``P`` of the module docstring)."""
        d, f = self.hidden, self.intermediate
        return 4 * d * d + 2 * d * f

    @property
    def head_params(self) -> int:
        return self.hidden * self.hidden + self.hidden * self.labels


def forward_flops(shape: EncoderShape, lengths: Iterable[int]) -> float:
    """FLOPs of one forward pass over sequences of the given real lengths."""
    lengths = [int(n) for n in lengths]
    tokens = sum(lengths)
    squares = sum(n * n for n in lengths)
    per_layer = 2 * shape.layer_params * tokens + 4 * shape.hidden * squares
    return float(shape.layers * per_layer + 2 * shape.head_params * len(lengths))


def kd_step_flops(
    student: EncoderShape,
    teacher: EncoderShape,
    lengths: Iterable[int],
    linear_match: bool = False,
    with_teacher: bool = True,
) -> float:
    """FLOPs of one KD training step: teacher forward (unless its outputs come from the teacher
    cache: `with_teacher=False`) + student forward and backward."""
    lengths = [int(n) for n in lengths]
    flops = forward_flops(teacher, lengths) * with_teacher + 3 * forward_flops(student, lengths)
    if linear_match:
        flops += 3 * 2 * (student.layers + 1) * student.hidden * teacher.hidden * sum(lengths)
    return flops


def layer_gemms(shape: EncoderShape, tokens: int) -> list[tuple[int, int, int]]:
    """The (M, K, N) matrix products of one encoder layer over `tokens` rows, in order."""
    d, f = shape.hidden, shape.intermediate
    return [(tokens, d, d)] * 4 + [(tokens, d, f), (tokens, f, d)]
