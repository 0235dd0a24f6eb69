"""Text output: GitHub-flavoured markdown tables and tidy CSVs (one row per cell).

Cell text in markdown: `mean ± std (n=k)` in percent with two decimals (`mean (n=1)` for one
seed), then on a second, smaller line the paper's number and Δ = ours − paper in points;
`missing` when no run fills an applicable cell; `–` where the paper prints "-" (the teacher has no
KD variant). CSV numbers are unrounded percent; empty fields mean "none".
"""

from __future__ import annotations

import csv
from pathlib import Path

from kdtune.report.languages import LanguageTable
from kdtune.report.paper import format_paper
from kdtune.report.records import Cell, init_label
from kdtune.report.tables import Table


def format_diff(diff: float | None) -> str:
    return "" if diff is None else f"{diff:+.2f}"


def cell_markdown(cell: Cell) -> str:
    if not cell.applicable:
        score = "–"
    elif cell.mean is None:
        score = "*missing*"
    else:
        spread = "" if cell.std is None else f" ± {cell.std:.2f}"
        score = f"**{cell.mean:.2f}**{spread} (n={cell.n})"
    if cell.paper is None:
        return score
    paper = f"paper {format_paper(cell.paper)}"
    if cell.diff is not None:
        paper += f", Δ {format_diff(cell.diff)}"
    return f"{score}<br><sub>{paper}</sub>"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def datasets_without_runs(table: Table) -> list[str]:
    """Datasets whose columns hold no score at all in this table (in column order)."""
    seen: dict[str, bool] = {}
    for col in table.columns:
        filled = any(row.cells[col.key].n for row in table.rows)
        seen[col.dataset] = seen.get(col.dataset, False) or filled
    return [d for d, filled in seen.items() if not filled]


def table_markdown(table: Table) -> str:
    """The table; a dataset without any run in it is left out (its paper numbers stay in the CSV)."""
    empty = set(datasets_without_runs(table))
    columns = [c for c in table.columns if c.dataset not in empty] or table.columns
    header = list(table.row_header) + [c.label for c in columns]
    align = [":--"] * len(table.row_header) + [":-:"] * len(columns)
    rows = []
    for row in table.rows:
        cells = [row.cells[c.key] for c in columns]
        if all(not c.applicable and c.paper is None for c in cells):
            continue  # e.g. the paper-only random-score row once the paper's datasets are left out
        labels = [f"*{label}*" if row.is_teacher and i == 0 else label for i, label in enumerate(row.labels)]
        rows.append(labels + [cell_markdown(c) for c in cells])
    return markdown_table(header, rows, align)


def _num(value: float | int | None) -> str:
    """Unrounded for the reader's purposes; 10 decimals drop float noise such as 0.1299999999999."""
    if value is None:
        return ""
    return repr(round(float(value), 10)) if isinstance(value, float) else str(value)


def write_table_csv(table: Table, path: Path) -> Path:
    """Tidy CSV: one row per (table row, column) with mean, std, n, paper, diff (percent)."""
    header = ["table", "row_label"] + list(table.row_keys) + ["dataset", "setting", "status", "mean", "std", "n", "paper", "diff", "seeds"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in table.rows:
            for col in table.columns:
                cell = row.cells[col.key]
                status = "n/a" if not cell.applicable else ("missing" if cell.missing else "ok")
                writer.writerow(
                    [table.name, " / ".join(row.labels)]
                    + list(row.keys)
                    + [col.dataset, col.setting, status, _num(cell.mean), _num(cell.std), cell.n,
                       _num(cell.paper), _num(cell.diff), ";".join(cell.seeds)]
                )
    return path


def language_markdown(table: LanguageTable) -> str:
    gain_header = f"gain ({init_label('teacher')} − {init_label(table.baseline)})" if table.baseline and "teacher" in table.inits else None
    header = ["Language"] + [init_label(i) for i in table.inits] + ([gain_header] if gain_header else [])
    rows = []
    marked = set(table.marked)
    for lang in table.languages():
        cells = []
        for init in table.inits:
            mean = table.mean(lang, init)
            cells.append("" if mean is None else f"{mean:.2f} (n={table.n(lang, init)})")
        if gain_header:
            gain = table.gain(lang)
            text = "" if gain is None else f"{gain:+.2f}"
            cells.append(f"**{text} ▲**" if lang in marked else text)
        rows.append([f"**{lang}**" if lang in marked else lang] + cells)
    align = [":--"] + ["--:"] * (len(header) - 1)
    return markdown_table(header, rows, align)


def write_language_csv(table: LanguageTable, path: Path) -> Path:
    """One row per (language, init): mean, std, n (percent) and the language's gain."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "language", "init", "mean", "std", "n", "gain", "gain_baseline", "marked"])
        for lang in table.languages():
            for init in table.inits:
                writer.writerow([
                    table.dataset, lang, init, _num(table.mean(lang, init)), _num(table.std(lang, init)),
                    table.n(lang, init), _num(table.gain(lang)), table.baseline or "", int(lang in table.marked),
                ])
    return path
