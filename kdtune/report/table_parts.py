"""What every table builder shares (`kdtune.report.tables`): the Table/Row/Column shape, the cell
builder that collects table-wide notes, runs per column, and the teacher row and note."""

from __future__ import annotations

from dataclasses import dataclass, field

from kdtune.report.paper import PAPER_DATASETS, Values
from kdtune.report.records import (
    Cell,
    dataset_order,
    param,
    param_bool,
    seed_cell,
    teacher_cell,
    varying_params,
)
from kdtune.tracking.query import TrialRecord


@dataclass(frozen=True)
class Column:
    dataset: str
    kd: bool | None  # None: one column per dataset

    @property
    def key(self) -> tuple[str, bool | None]:
        return (self.dataset, self.kd)

    @property
    def setting(self) -> str:
        return "" if self.kd is None else ("KD" if self.kd else "NON-KD")

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.setting}".strip()


@dataclass
class Row:
    labels: tuple[str, ...]  # what the reader sees, one per row-header column
    keys: tuple[str, ...]  # machine values for the CSV (init, layers, ...)
    cells: dict[tuple[str, bool | None], Cell]
    is_teacher: bool = False


@dataclass
class Table:
    name: str  # table2 ... table5: also the CSV file stem
    title: str
    selection: str  # one line: which runs the table reads
    row_header: tuple[str, ...]
    row_keys: tuple[str, ...]
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_runs: int = 0  # FINISHED trial runs the table read
    run_ids: set[str] = field(default_factory=set)

    def cell(self, row_keys: tuple[str, ...], dataset: str, kd: bool | None) -> Cell:
        for row in self.rows:
            if row.keys == tuple(row_keys):
                return row.cells[(dataset, kd)]
        raise KeyError(row_keys)


class Cells:
    """Builds cells and collects the table-wide notes (duplicate seeds, mixed settings)."""

    def __init__(self) -> None:
        self.duplicates = 0
        self.mixed: set[str] = set()

    def seeds(self, runs: list[TrialRecord], paper: float | int | None) -> Cell:
        cell, dropped = seed_cell(runs, paper=paper)
        self.duplicates += dropped
        self.mixed |= varying_params(runs)
        return cell

    def notes(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(
                f"{self.duplicates} run(s) repeated a seed already in their cell; only the latest run per seed counts."
            )
        if self.mixed:
            out.append(
                "Some cells average runs that differ in more than the seed: "
                + ", ".join(sorted(self.mixed))
                + " (narrow the experiment or check the sweep grid)."
            )
        return out


def columns_for(records: list[TrialRecord], with_kd: bool) -> list[Column]:
    datasets = dataset_order((param(r, "dataset") or "?" for r in records), always=PAPER_DATASETS)
    kds: tuple[bool | None, ...] = (False, True) if with_kd else (None,)
    return [Column(d, kd) for d in datasets for kd in kds]


def runs_by_column(runs: list[TrialRecord], columns: list[Column]) -> dict[tuple, list[TrialRecord]]:
    out: dict[tuple, list[TrialRecord]] = {c.key: [] for c in columns}
    for rec in runs:
        kd = param_bool(rec, "kd")
        for col in columns:
            if param(rec, "dataset") == col.dataset and (col.kd is None or col.kd == kd):
                out[col.key].append(rec)
    return out


def teacher_row(
    records: list[TrialRecord], columns: list[Column], paper: Values, labels: tuple[str, ...], keys: tuple[str, ...]
) -> Row:
    by_col = runs_by_column(records, [Column(c.dataset, None) for c in columns])
    cells = {}
    for col in columns:
        if col.kd:  # the teacher has no KD variant: "-" as in the paper
            cells[col.key] = Cell(applicable=False)
        else:
            cells[col.key] = teacher_cell(by_col[(col.dataset, None)], paper=paper.get(col.key))
    return Row(labels=labels, keys=keys, cells=cells, is_teacher=True)


def teacher_note(records: list[TrialRecord]) -> str | None:
    bases = sorted({param(r, "base_model") or "?" for r in records})
    if not records:
        return None
    return (
        f"Teacher: fine-tuned from base_model {', '.join(bases)}; its score is the teacher-test score its "
        "students logged on their test selection (n counts distinct teachers, not students)."
    )
