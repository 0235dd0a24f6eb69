"""Which teacher layer each student layer comes from.

Index convention (used everywhere in kdtune): a layer map is a list with one entry per student
layer; entry ``j`` (0-based student layer) is the 0-based index of the teacher layer it is paired
with. The same map drives the weight copy (student layer ``j`` starts as a copy of teacher layer
``map[j]``) and the KD layer pairs (student ``hidden_states[j + 1]`` / ``attentions[j]`` are
matched with teacher ``hidden_states[map[j] + 1]`` / ``attentions[map[j]]``).

Named maps, for T teacher layers and S student layers (examples for 12 -> 6):

- ``paper``: the paper's eq. 5/6 and TinyBERT's ``k = i * divisor`` with 1-based i, k; 0-based
  ``round((j + 1) * T / S) - 1``, i.e. the last layer of each block: [1, 3, 5, 7, 9, 11].
- ``distilbert``: evenly spaced including the first and the last layer,
  ``round(j * (T - 1) / (S - 1))``: [0, 2, 4, 7, 9, 11] (DistilBERT's extraction choice).
- ``first``: the bottom S layers: [0, 1, 2, 3, 4, 5].
- ``last``: the top S layers: [6, 7, 8, 9, 10, 11].
- ``uniform``: evenly spaced from layer 0, ``floor(j * T / S)``: [0, 2, 4, 6, 8, 10].
- an explicit list of S strictly increasing 0-based teacher indices.

``round`` is Python's round-half-to-even applied to exact fractions, so results do not depend on
float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from kdtune.config import LAYER_MAPS
from kdtune.errors import UsageError


def _check_sizes(teacher_layers: int, student_layers: int) -> None:
    if teacher_layers < 1:
        raise UsageError(f"teacher has {teacher_layers} layers; need at least 1")
    if not 1 <= student_layers <= teacher_layers:
        raise UsageError(
            f"layers: {student_layers} is not allowed; the student needs 1..{teacher_layers} "
            f"layers (the teacher has {teacher_layers})"
        )


def _named(name: str, t: int, s: int) -> list[int]:
    if name == "paper":
        return [round(Fraction((j + 1) * t, s)) - 1 for j in range(s)]
    if name == "distilbert":
        if s == 1:
            return [t - 1]  # one layer: keep the top one, as `paper` does
        return [round(Fraction(j * (t - 1), s - 1)) for j in range(s)]
    if name == "first":
        return list(range(s))
    if name == "last":
        return list(range(t - s, t))
    if name == "uniform":
        return [j * t // s for j in range(s)]
    raise AssertionError(name)


def resolve_layer_map(
    spec: str | Sequence[int], teacher_layers: int, student_layers: int
) -> list[int]:
    """Return the 0-based teacher layer index for each 0-based student layer (see module doc).

    `spec` is one of `LAYER_MAPS` or an explicit sequence of teacher indices. Bad input raises
    `UsageError` naming `layer_map` (or `layers` when the student is deeper than the teacher).
    """
    _check_sizes(teacher_layers, student_layers)
    allowed = f"one of {', '.join(LAYER_MAPS)} or a list of {student_layers} increasing teacher layer indices in 0..{teacher_layers - 1}"
    if isinstance(spec, str):
        if spec not in LAYER_MAPS:
            raise UsageError(f"layer_map: unknown value {spec!r}; allowed: {allowed}")
        return _named(spec, teacher_layers, student_layers)
    try:
        layers = [int(x) for x in spec]
        if any(int(x) != x for x in spec):
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"layer_map: {spec!r} is not a list of integers; allowed: {allowed}") from None
    if len(layers) != student_layers:
        raise UsageError(
            f"layer_map: {layers} has {len(layers)} entries but the student has {student_layers} layers; allowed: {allowed}"
        )
    if any(not 0 <= k < teacher_layers for k in layers):
        raise UsageError(f"layer_map: {layers} has an index outside 0..{teacher_layers - 1}; allowed: {allowed}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise UsageError(f"layer_map: {layers} is not strictly increasing; allowed: {allowed}")
    return layers
