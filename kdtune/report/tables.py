"""The paper's Tables 2-5 rebuilt from FINISHED trial records (plain data, no rendering).

Selections (params as the sweep logs them; per dataset, every table uses the data fraction most
of its runs use, `records.at_table_fraction`: the paper's 1.0, or a scaled-down sweep's own):
- Table 2: train_partition = eval_partition = teacher_partition = all, epochs > 0. Rows are
  init x layers x hidden as run, columns dataset x NON-KD/KD.
- Table 3: teacher_partition = seen, eval_partition = unseen, train_partition in {seen, english},
  epochs > 0, full-width students. Rows init x training data, columns dataset x NON-KD/KD.
- Table 4: teacher_partition = train_partition = english, eval_partition = unseen, KD, epochs > 0,
  full width. Rows init, one column per dataset.
- Table 5: from-teacher full-width students, teacher_partition = eval_partition = all: "With
  Finetune" = KD, train all, epochs > 0; "Without Finetune" = epochs 0 (copy only; KD, training
  partition and fraction do not matter there). Plus the random-score row: every test row predicted
  as the test set's most frequent class, scored with the report's metric (the paper's footnote 2).

"Full width" is the widest student hidden size among a table's runs of that dataset (the paper's
768); "half" is half of it (384). Paper numbers are matched by init and that width class, so a
tiny-preset sweep (e.g. 2 layers x 32) is compared with the paper's 6 x 768 row of the same init.
Teacher rows use the students' teacher-test score (the teacher on the same test selection).
Every value is the report's metric (macro-F1 or micro-F1, `kdtune.report.records.project`).
The Table/Row/Column shape and the pieces every builder shares are in `kdtune.report.table_parts`.
"""

from __future__ import annotations

from collections import Counter

import kdtune.report.paper as paper_numbers
from kdtune.report.paper import PAPER_DATASETS
from kdtune.report.records import (
    MAJORITY_SCORE,
    TEACHER_LABEL,
    TEACHER_WIDTH,
    Cell,
    at_table_fraction,
    data_notes,
    full_width,
    group_by,
    hidden_label,
    hidden_of,
    init_label,
    init_sort_key,
    is_copy_only,
    is_trained,
    layers_label,
    layers_of,
    only_full_width,
    param,
    param_bool,
    setup_matches,
    teacher_cell,
    teacher_partition,
)
from kdtune.report.table_parts import Cells, Row, Table, columns_for, runs_by_column, teacher_note, teacher_row
from kdtune.tracking.query import TrialRecord

PARTITION_LABELS = {"seen": "seen lang", "unseen": "unseen lang", "english": "english", "all": "all"}


def _width_class(hidden: float | None, widest: float | None) -> str | None:
    """full / half relative to the widest student (None when it cannot be told)."""
    if hidden is None or widest is None:
        return None
    if hidden == widest:
        return "full"
    if widest != TEACHER_WIDTH and (2 * hidden == widest or hidden == widest // 2):
        return "half"
    return None  # e.g. an explicit size beside teacher-width runs: the teacher's size is unknown here


PAPER_WIDTH = {768: "full", 384: "half"}


def table2(trials: list[TrialRecord]) -> Table:
    sel = at_table_fraction([
        r for r in trials if setup_matches(r, "all", "all", "all") and is_trained(r) and hidden_of(r) is not None
    ])
    columns = columns_for(sel, with_kd=True)
    table = Table(
        name="table2",
        title="Table 2: model initialization with and without KD",
        selection="train, test and teacher data: all languages; the data fraction most runs use "
        "(100% in the paper's sweeps); epochs > 0",
        row_header=("Model initialization", "Layers", "Hidden"),
        row_keys=("init", "layers", "hidden"),
        columns=columns,
        n_runs=len(sel),
        run_ids={r.run_id for r in sel},
    )
    widest = full_width(sel)
    widest_all = max(widest.values()) if widest else None
    paper_rows = {(init, PAPER_WIDTH[hidden]): values for (init, _, hidden), values in paper_numbers.paper_rows("table2")}
    cells = Cells()

    teacher_shape = paper_numbers.paper_teacher_shape("table2")
    table.rows.append(
        teacher_row(
            sel,
            columns,
            paper_numbers.paper_teacher("table2"),
            labels=(TEACHER_LABEL, "–", "–") if sel else (TEACHER_LABEL, str(teacher_shape["layers"]), str(teacher_shape["hidden"])),
            keys=("teacher_model", "", ""),
        )
    )

    groups = group_by(sel, lambda r: (param(r, "init") or "?", param(r, "layers") or "", param(r, "hidden") or ""))
    covered: set[tuple[str, str]] = set()
    student_rows: list[tuple[tuple, Row]] = []
    for (init, layers_raw, hidden_raw), runs in groups.items():
        layers, hidden = layers_of(runs[0]), hidden_of(runs[0])
        by_col = runs_by_column(runs, columns)
        row_cells = {}
        for col in columns:
            width = _width_class(hidden, widest.get(col.dataset, widest_all))
            paper = paper_rows.get((init, width), {}).get(col.key) if width else None
            row_cells[col.key] = cells.seeds(by_col[col.key], paper)
            if width and by_col[col.key]:
                covered.add((init, width))
        row = Row(labels=(init_label(init), layers_label(layers), hidden_label(hidden)),
                  keys=(init, layers_raw, hidden_raw), cells=row_cells)
        student_rows.append((_sort_key(init, layers, hidden), row))

    student_rows += _paper_rows_nobody_ran(sel, columns, covered, widest_all)
    table.rows.extend(row for _, row in sorted(student_rows, key=lambda item: item[0]))
    if set(widest) & set(PAPER_DATASETS):
        table.notes.append(
            "Paper numbers are matched by init and width: full = the widest student here (paper: 6 x 768), "
            "half = half of it (paper: 6 x 384)."
        )
    if any(hidden_of(r) == TEACHER_WIDTH for r in sel) or any(layers_of(r) is None for r in sel):
        table.notes.append("'= teacher' / '½ teacher': the sweep left hidden / layers unset (the teacher's "
                           "hidden size, half the teacher's layers).")
    table.notes += data_notes(sel) + [n for n in [teacher_note(sel)] if n] + cells.notes()
    return table


def _sort_key(init: str, layers: int | None, hidden: float, share: float = 1.0) -> tuple:
    """Widest first; `share` of `hidden` (½ of an unknown teacher width sorts after the whole)."""
    return (-hidden, -share, init_sort_key(init), -(layers or 0))


def _paper_rows_nobody_ran(sel: list[TrialRecord], columns, covered: set[tuple[str, str]],
                           widest_all: float | None) -> list[tuple[tuple, Row]]:
    """Table 2's paper rows nobody ran: shown as missing, in the shape a run of this sweep would have."""
    student_rows: list[tuple[tuple, Row]] = []
    common = Counter((layers_of(r), param(r, "layers") or "") for r in sel).most_common(1)
    for (init, p_layers, p_hidden), values in paper_numbers.paper_rows("table2"):
        width = PAPER_WIDTH[p_hidden]
        if (init, width) in covered:
            continue
        labels, keys = (init_label(init), str(p_layers), str(p_hidden)), (init, str(p_layers), str(p_hidden))
        hidden_sort, share = float(p_hidden), 1.0
        if widest_all is not None and common:
            (layers, layers_raw), _ = common[0]
            p_layers = layers or 0
            if widest_all == TEACHER_WIDTH:  # half of an unknown teacher width: no number to show
                hidden_sort, share = TEACHER_WIDTH, 1.0 if width == "full" else 0.5
                hidden_text, hidden_key = ("= teacher", "None") if width == "full" else ("½ teacher", "")
            else:
                hidden_sort = widest_all if width == "full" else widest_all // 2
                hidden_text = hidden_key = str(int(hidden_sort))
            labels, keys = (init_label(init), layers_label(layers), hidden_text), (init, layers_raw, hidden_key)
        row_cells = {col.key: Cell(paper=values.get(col.key)) for col in columns}
        student_rows.append((_sort_key(init, p_layers, hidden_sort, share), Row(labels=labels, keys=keys, cells=row_cells)))
    return student_rows


def _init_train_table(  # Tables 3 and 4 differ in exactly these: each is a keyword at the call
    name: str,
    title: str,
    selection: str,
    sel: list[TrialRecord],
    with_kd: bool,
    row_header: tuple[str, ...],
    row_keys: tuple[str, ...],
    key_of,
    labels_of,
    teacher_labels: tuple[str, ...],
) -> Table:
    """Tables 3 and 4: paper rows in the paper's order (plus any other observed rows), teacher first."""
    columns = columns_for(sel, with_kd=with_kd)
    table = Table(name, title, selection, row_header, row_keys, columns, n_runs=len(sel), run_ids={r.run_id for r in sel})
    table.rows.append(
        teacher_row(sel, columns, paper_numbers.paper_teacher(name), teacher_labels, ("teacher_model",) + ("",) * (len(row_keys) - 1))
    )
    groups = group_by(sel, key_of)
    cells = Cells()
    keys_in_order = [key for key, _ in paper_numbers.paper_rows(name)]
    paper = dict(paper_numbers.paper_rows(name))
    keys_in_order += sorted((k for k in groups if k not in paper), key=lambda k: (init_sort_key(k[0]), k[1:]))
    for key in keys_in_order:
        by_col = runs_by_column(groups.get(key, []), columns)
        row_cells = {col.key: cells.seeds(by_col[col.key], paper.get(key, {}).get(col.key)) for col in columns}
        table.rows.append(Row(labels=labels_of(key), keys=tuple(str(k) for k in key), cells=row_cells))
    if sel:
        table.notes.append("Full-width students only (the widest hidden size run for each dataset).")
    table.notes += data_notes(sel) + [n for n in [teacher_note(sel)] if n] + cells.notes()
    return table


def table3(trials: list[TrialRecord]) -> Table:
    sel = only_full_width(at_table_fraction(
        [r for r in trials if setup_matches(r, {"seen", "english"}, "unseen", "seen") and is_trained(r)]
    ))
    return _init_train_table(
        "table3",
        "Table 3: zero-shot cross-lingual transfer (teacher trained on seen languages)",
        "teacher data: seen lang; student training data: seen lang or english; test: unseen lang; "
        "the data fraction most runs use; epochs > 0",
        sel,
        with_kd=True,
        row_header=("Model initialization", "Training data", "Test data"),
        row_keys=("init", "train_partition", "eval_partition"),
        key_of=lambda r: (param(r, "init") or "?", param(r, "train_partition"), param(r, "eval_partition")),
        labels_of=lambda k: (init_label(k[0]), PARTITION_LABELS.get(k[1], k[1]), PARTITION_LABELS.get(k[2], k[2])),
        teacher_labels=(TEACHER_LABEL, "seen lang", "unseen lang"),
    )


def table4(trials: list[TrialRecord]) -> Table:
    sel = only_full_width(at_table_fraction(
        [
            r
            for r in trials
            if setup_matches(r, "english", "unseen", "english") and param_bool(r, "kd") is True and is_trained(r)
        ]
    ))
    return _init_train_table(
        "table4",
        "Table 4: teacher and students trained on english only, with KD",
        "teacher and student training data: english; test: unseen lang; KD; the data fraction most runs use; epochs > 0",
        sel,
        with_kd=False,
        row_header=("Model initialization",),
        row_keys=("init",),
        key_of=lambda r: (param(r, "init") or "?",),
        labels_of=lambda k: (init_label(k[0]),),
        teacher_labels=(TEACHER_LABEL,),
    )


TABLE5_LABELS = {"with_finetune": "With Finetune", "without_finetune": "Without Finetune", "random": "Random Score"}


def table5(trials: list[TrialRecord]) -> Table:
    base = [
        r
        for r in trials
        if param(r, "init") == "teacher"
        and param(r, "eval_partition") == "all"
        and teacher_partition(r) == "all"
    ]
    finetuned = at_table_fraction(
        [r for r in base if is_trained(r) and param_bool(r, "kd") is True and param(r, "train_partition") == "all"]
    )
    copied = [r for r in base if is_copy_only(r)]
    widest = full_width(finetuned + copied)

    def full(runs: list[TrialRecord]) -> list[TrialRecord]:
        return [r for r in runs if hidden_of(r) == widest.get(param(r, "dataset") or "")]

    finetuned, copied = full(finetuned), full(copied)
    columns = columns_for(finetuned + copied, with_kd=False)
    table = Table(
        name="table5",
        title="Table 5: copying the teacher's weights, without and with fine-tuning",
        selection="from-teacher full-width students; teacher and test data: all languages; "
        "With Finetune: KD, epochs > 0, the data fraction most runs use; Without Finetune: epochs = 0 (copy only)",
        row_header=("Training method",),
        row_keys=("method",),
        columns=columns,
        n_runs=len(finetuned) + len(copied),
        run_ids={r.run_id for r in finetuned + copied},
    )
    cells = Cells()
    runs = {"with_finetune": finetuned, "without_finetune": copied}
    for (key,), values in paper_numbers.paper_rows("table5"):
        if key in runs:
            by_col = runs_by_column(runs[key], columns)
            row_cells = {col.key: cells.seeds(by_col[col.key], values.get(col.key)) for col in columns}
        else:  # the majority-class baseline its students logged for the same test rows
            by_col = runs_by_column(finetuned + copied, columns)
            row_cells = {col.key: teacher_cell(by_col[col.key], values.get(col.key), key=MAJORITY_SCORE)
                         for col in columns}
        table.rows.append(Row(labels=(TABLE5_LABELS.get(key, key),), keys=(key,), cells=row_cells))
    table.notes.append(
        "Random Score: every test row predicted as the test set's most frequent class (the paper's footnote 2), "
        "in the report's metric; runs logged before kdtune computed it leave the cell empty. The paper's "
        "7 and 33.33 match that baseline's accuracy (`kdtune report --metric micro_f1`), not its macro-F1."
    )
    table.notes += data_notes(finetuned + copied) + cells.notes()
    return table


def all_tables(trials: list[TrialRecord]) -> list[Table]:
    return [table2(trials), table3(trials), table4(trials), table5(trials)]
