"""The paper's printed numbers (paper_numbers.yaml), as lookups keyed like the report's cells.

Keys: a table's student rows are keyed by the tuple of their label fields in the YAML (Table 2:
(init, layers, hidden); Table 3: (init, train, test); Table 4: (init,); Table 5: (row,)), and a
row's values by column `(dataset, kd)`, where kd is False (NON-KD), True (KD), or None for tables
with one column per dataset. Values are percent, exactly as printed.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

PAPER_DATASETS = ("massive", "tsm")
# Classes per dataset: uniform guessing scores about 1/K in both F1s, which beats the majority
# class's macro-F1 (MASSIVE: 1.7 against 0.2), so chance is the higher of the two.
CLASSES = {"massive": 60, "tsm": 3}
Column = tuple[str, "bool | None"]
Values = dict[Column, float]


@lru_cache(maxsize=1)
def load_paper_numbers() -> dict:
    text = resources.files("kdtune.report").joinpath("paper_numbers.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _kd_columns(numbers: list) -> Values:
    """[massive NON-KD, massive KD, tsm NON-KD, tsm KD] -> {(dataset, kd): value}."""
    out: Values = {}
    for i, dataset in enumerate(PAPER_DATASETS):
        out[(dataset, False)] = numbers[2 * i]
        out[(dataset, True)] = numbers[2 * i + 1]
    return out


def _plain_columns(numbers: list) -> Values:
    return {(dataset, None): numbers[i] for i, dataset in enumerate(PAPER_DATASETS)}


def paper_rows(table: str) -> list[tuple[tuple, Values]]:
    """Student rows of `table` (table2..table5) in the paper's order: (row key, values)."""
    data = load_paper_numbers()[table]
    if table == "table2":
        return [((r[0], int(r[1]), int(r[2])), _kd_columns(r[3:])) for r in data["students"]]
    if table == "table3":
        return [((r[0], r[1], r[2]), _kd_columns(r[3:])) for r in data["students"]]
    if table == "table4":
        return [((r[0],), _plain_columns(r[1:])) for r in data["students"]]
    if table == "table5":
        return [((r[0],), _plain_columns(r[1:])) for r in data["rows"]]
    raise KeyError(table)


def paper_teacher(table: str) -> Values:
    """The teacher row of `table`: NON-KD columns for Tables 2 and 3, plain columns for Table 4."""
    teacher = load_paper_numbers()[table].get("teacher") or {}
    kd = None if table == "table4" else False
    return {(dataset, kd): teacher[dataset] for dataset in PAPER_DATASETS if dataset in teacher}


def paper_teacher_shape(table: str) -> dict:
    """The teacher row's label fields (init, layers, hidden, train, test where printed)."""
    teacher = load_paper_numbers()[table].get("teacher") or {}
    return {k: v for k, v in teacher.items() if k not in PAPER_DATASETS}


def format_paper(value: float | int | None) -> str:
    """A paper number as printed: two decimals, or an integer where the paper printed one."""
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.2f}"
