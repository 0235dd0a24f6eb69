"""Stratified, seeded fractions: counts per (language, label) follow the documented rounding."""

from __future__ import annotations

import json
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest

from kdtune import data
from kdtune.cli import main
from kdtune.errors import UsageError


def col(ds, name: str) -> list:
    """A column as a Python list via Arrow (fast on large index-selected datasets)."""
    table = ds.data.table.select([name])
    return (table.take(ds._indices.column(0)) if ds._indices is not None else table).column(name).to_pylist()


def expected_cell(n: int, fraction: float) -> int:
    """Independent statement of the rule: round half up, at least 1, at most n."""
    return min(n, max(1, int(Decimal(str(n * fraction)).quantize(Decimal(1), rounding=ROUND_HALF_UP))))


@pytest.fixture(scope="module")
def massive_seen_train(shared_data, kdtune_cache):
    train = data.load("massive", shared_data)["train"]
    return data.select_languages(train, data.languages("massive", "seen"))


def test_cell_size_rule():
    assert data.cell_size(4, 0.01) == 1  # never vanishes
    assert data.cell_size(150, 0.01) == 2  # 1.5 rounds half up
    assert data.cell_size(250, 0.01) == 3  # 2.5 -> 3 (not banker's 2)
    assert data.cell_size(613, 0.05) == 31  # 30.65
    assert data.cell_size(613, 1.0) == 613
    assert data.cell_size(0, 0.5) == 0


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2])
def test_massive_counts_per_cell(massive_seen_train, fraction):
    full = Counter(zip(col(massive_seen_train, "language"), col(massive_seen_train, "label")))
    sub = data.stratified_fraction(massive_seen_train, fraction, seed=1)
    got = Counter(zip(col(sub, "language"), col(sub, "label")))
    assert set(got) == set(full)  # no (language, label) vanishes, including cooking_query (4 rows)
    for cell, n in full.items():
        assert got[cell] == expected_cell(n, fraction), cell
    assert sub.num_rows == sum(expected_cell(n, fraction) for n in full.values())


def test_same_seed_same_ids_other_seed_differs(massive_seen_train):
    a = col(data.stratified_fraction(massive_seen_train, 0.05, seed=3), "id")
    b = col(data.stratified_fraction(massive_seen_train, 0.05, seed=3), "id")
    c = col(data.stratified_fraction(massive_seen_train, 0.05, seed=4), "id")
    assert a == b
    assert a != c and len(a) == len(c)
    assert len(set(a) & set(c)) < 0.2 * len(a)


def test_choice_per_language_is_independent_of_other_languages(massive_seen_train):
    english_only = data.select_languages(massive_seen_train, ["en-US"])
    alone = col(data.stratified_fraction(english_only, 0.05, seed=7), "id")
    within = data.stratified_fraction(massive_seen_train, 0.05, seed=7)
    assert col(data.select_languages(within, ["en-US"]), "id") == alone


def test_fraction_one_is_whole_split_and_bad_fractions():
    train = data.load("synthetic")["train"]
    whole = data.stratified_fraction(train, 1.0, seed=5)
    assert whole["id"] == train["id"]
    sub = data.stratified_fraction(train, 0.1, seed=0)
    assert Counter(zip(col(sub, "language"), col(sub, "label"))) == {
        (lang, label): 4 for lang in data.languages("synthetic", "all") for label in range(8)
    }
    for bad in (0, -0.1, 1.5, float("nan"), "x"):
        with pytest.raises(UsageError, match="fraction"):
            data.stratified_fraction(train, bad, seed=0)
    with pytest.raises(UsageError, match="seed"):
        data.stratified_fraction(train, 0.5, seed=-1)


def test_cli_counts_json_and_table(shared_data, kdtune_cache, capsys):
    argv = ["data", "--dataset", "tsm", "--data-dir", str(shared_data), "--partition", "unseen",
            "--fraction", "0.05", "--seed", "1"]  # fmt: skip
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["languages"] == ["arabic", "french", "hindi", "portuguese"]
    cell = expected_cell(613, 0.05)
    assert out["counts"] == {lang: {"negative": cell, "neutral": cell, "positive": cell} for lang in out["languages"]}
    assert out["rows"] == 4 * 3 * cell
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("tsm train, partition unseen (4 languages), fraction 0.05, seed 1")
    assert table[2].split() == ["arabic", str(3 * cell), "3", str(cell), str(cell)]
    assert table[-1].split() == ["total", str(12 * cell)]
    for bad in ("0", "1.01", "-1", "abc"):
        assert main(["data", "--dataset", "synthetic", "--fraction", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "fraction" in err
    assert main(["data", "--dataset", "synthetic", "--split", "dev"]) == 2
    assert "--split 'dev'" in capsys.readouterr().err
