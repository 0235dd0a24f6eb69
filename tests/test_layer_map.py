"""Layer maps: hand-written expected maps and invariants over many sizes."""

from __future__ import annotations

import pytest

from kdtune.errors import UsageError
from kdtune.models.layer_map import LAYER_MAPS, resolve_layer_map


@pytest.mark.parametrize(
    "name, expected",
    [
        ("paper", [1, 3, 5, 7, 9, 11]),
        ("distilbert", [0, 2, 4, 7, 9, 11]),
        ("first", [0, 1, 2, 3, 4, 5]),
        ("last", [6, 7, 8, 9, 10, 11]),
        ("uniform", [0, 2, 4, 6, 8, 10]),
    ],
)
def test_named_maps_12_to_6(name, expected):
    assert resolve_layer_map(name, 12, 6) == expected


@pytest.mark.parametrize(
    "name, t, s, expected",
    [
        ("paper", 12, 4, [2, 5, 8, 11]),  # k = 3i, 1-based
        ("paper", 24, 6, [3, 7, 11, 15, 19, 23]),
        ("paper", 5, 2, [1, 4]),  # round(2.5)=2 (half to even) -> 0-based 1
        ("paper", 4, 2, [1, 3]),
        ("distilbert", 12, 4, [0, 4, 7, 11]),  # 0, 11/3, 22/3, 11 rounded
        ("distilbert", 12, 1, [11]),
        ("uniform", 12, 4, [0, 3, 6, 9]),
        ("uniform", 7, 3, [0, 2, 4]),
        ("last", 4, 1, [3]),
        ("first", 3, 3, [0, 1, 2]),
    ],
)
def test_named_maps_other_sizes(name, t, s, expected):
    assert resolve_layer_map(name, t, s) == expected


def test_named_maps_are_valid_for_all_sizes():
    for t in range(1, 25):
        for s in range(1, t + 1):
            for name in LAYER_MAPS:
                m = resolve_layer_map(name, t, s)
                assert len(m) == s, (name, t, s)
                assert all(0 <= k < t for k in m), (name, t, s, m)
                assert all(b > a for a, b in zip(m, m[1:])), (name, t, s, m)
                if s == t:
                    assert m == list(range(t))


def test_explicit_list():
    assert resolve_layer_map([0, 5, 11], 12, 3) == [0, 5, 11]
    assert resolve_layer_map((2, 3), 4, 2) == [2, 3]


@pytest.mark.parametrize(
    "spec, t, s, words",
    [
        ("nope", 12, 6, ["layer_map", "paper", "distilbert", "uniform"]),
        ([0, 1], 12, 3, ["layer_map", "3"]),
        ([0, 12, 5], 12, 3, ["layer_map", "0..11"]),
        ([3, 2, 5], 12, 3, ["layer_map", "increasing"]),
        ([1, 1, 5], 12, 3, ["layer_map", "increasing"]),
        ([0.5, 1, 2], 12, 3, ["layer_map"]),
        ("paper", 12, 13, ["layers", "1..12"]),
        ("paper", 12, 0, ["layers"]),
    ],
)
def test_errors(spec, t, s, words):
    with pytest.raises(UsageError) as err:
        resolve_layer_map(spec, t, s)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
