"""Uniform element selection and head-aware attention indices vs numpy / hand-written indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdtune.errors import UsageError
from kdtune.models.selection import HEAD_MODES, attention_indices, head_map, student_heads, uniform_indices


def test_uniform_indices_hand_values():
    assert uniform_indices(4, 2).tolist() == [0, 2]  # the paper's 1st and 3rd slices
    assert uniform_indices(768, 384).tolist() == list(range(0, 768, 2))
    assert uniform_indices(10, 4).tolist() == [0, 2, 5, 7]
    assert uniform_indices(5, 5).tolist() == [0, 1, 2, 3, 4]
    assert uniform_indices(96, 40).dtype == torch.long


def test_uniform_indices_match_numpy_and_stay_in_range():
    for src in range(1, 70):
        for dst in range(1, src + 1):
            idx = uniform_indices(src, dst).numpy()
            expected = np.floor(np.arange(dst) * src / dst).astype(np.int64)
            np.testing.assert_array_equal(idx, expected)
            assert idx[0] == 0 and idx[-1] < src and np.all(np.diff(idx) > 0)


def test_uniform_indices_rejects_growth():
    with pytest.raises(ValueError):
        uniform_indices(3, 4)


def test_keep_heads_768_to_384():
    idx = attention_indices(768, 12, 384, "keep_heads")
    # 12 heads of 64 -> 12 heads of 32: inside head h keep h*64 + 0, 2, ..., 62
    expected = np.concatenate([h * 64 + np.arange(0, 64, 2) for h in range(12)])
    np.testing.assert_array_equal(idx.numpy(), expected)
    assert student_heads(768, 12, 384, "keep_heads") == 12


def test_keep_head_dim_768_to_384():
    idx = attention_indices(768, 12, 384, "keep_head_dim")
    expected = np.concatenate([h * 64 + np.arange(64) for h in [0, 2, 4, 6, 8, 10]])
    np.testing.assert_array_equal(idx.numpy(), expected)
    assert student_heads(768, 12, 384, "keep_head_dim") == 6


def test_non_divisible_widths():
    # 96 = 4 heads of 24 -> 40 = 4 heads of 10; within a head floor(i*24/10)
    within = [0, 2, 4, 7, 9, 12, 14, 16, 19, 21]
    expected = [h * 24 + w for h in range(4) for w in within]
    assert attention_indices(96, 4, 40, "keep_heads").tolist() == expected
    # 96 = 12 heads of 8 -> 40 = 5 heads of 8: teacher heads floor(i*12/5)
    expected = [h * 8 + e for h in [0, 2, 4, 7, 9] for e in range(8)]
    assert attention_indices(96, 12, 40, "keep_head_dim").tolist() == expected


def test_head_map():
    assert head_map(12, 12) == list(range(12))
    assert head_map(12, 6) == [0, 2, 4, 6, 8, 10]
    assert head_map(12, 5) == [0, 2, 4, 7, 9]


@pytest.mark.parametrize(
    "args, words",
    [
        ((96, 12, 40, "keep_heads"), ["hidden", "multiples of 12"]),
        ((96, 4, 40, "keep_head_dim"), ["hidden", "multiples of 24"]),
        ((96, 4, 128, "keep_heads"), ["hidden", "96"]),
        ((96, 4, 48, "keep_all"), ["head_mode", "keep_heads", "keep_head_dim"]),
    ],
)
def test_illegal_widths(args, words):
    with pytest.raises(UsageError) as err:
        attention_indices(*args)
    for w in words:
        assert w in str(err.value)


def test_modes_named():
    assert HEAD_MODES == ("keep_heads", "keep_head_dim")
