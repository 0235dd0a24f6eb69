"""Assemble a report folder from trial records: report.md, tidy CSVs and PNG figures.

Only FINISHED trial runs fill cells; the others are counted by status in the report header.
Training-loss curves come through `history(run_ids, key)` (in the CLI: `query.fetch_history`),
so this module never talks to MLflow itself and is testable on plain records.

Files (only those of the requested formats; earlier report files of these names in the folder
are removed first so a stale figure is never shipped):
  report.md, table2.csv ... table5.csv, figure2.csv, figure2.png, figure3.png,
  languages_<dataset>.csv, languages_<dataset>.png, runs.csv (every FINISHED trial, both F1s),
  teachers.csv (every FINISHED teacher run: its setting and best validation score),
  and for each sweep that sampled fields: search_<sweep>.csv and .png (kdtune/report/search.py)

Every table, figure and language table compares one `metric` (`micro_f1`, the paper's and the default,
or `macro_f1`; `kdtune report --metric`); runs.csv holds both for every run and seed.
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kdtune.report.claims_section as claims_section
import kdtune.report.figures as figures
import kdtune.report.render as render
import kdtune.report.search as search
import kdtune.report.teachers as teacher_table
from kdtune.report.claims import Claim, claims
from kdtune.report.languages import DEFAULT_FILTER, LanguageTable, language_tables
from kdtune.metrics import DEFAULT_METRIC, FINAL_STEMS, LEGACY_METRIC, METRICS, heldout_metric, metric_name
from kdtune.report.records import LEGACY_NAMES, USED_STATUS, init_label, project
from kdtune.report.tables import Table, all_tables
from kdtune.errors import UsageError
from kdtune.tracking.query import TrialRecord

FORMATS = ("md", "csv", "png")
OWN_FILES = ("report.md", "claims.csv", "table*.csv", "figure*.csv", "figure*.png", "languages_*.csv", "languages_*.png", "runs.csv",
             "teachers.csv", "search_*.csv", "search_*.png")
METRIC_WORDS = {"macro_f1": "macro-F1", "micro_f1": "micro-F1 (= accuracy)"}
FIGURE_CONTEXT = "KD; train, test and teacher data: all languages; full-width students"
INTRO = (
    "All scores are test {metric} in percent: mean ± sample standard deviation over seeds, "
    "n = number of seeds (no ± for a single seed). Under each score, in small print: the number "
    "printed in the paper (arXiv 2406.16524) and Δ = ours − paper in F1 points. *missing*: no "
    "FINISHED run for that cell; –: not applicable (as in the paper)."
)


@dataclass
class ReportResult:
    folder: Path
    files: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    languages: list[LanguageTable] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    status_counts: Counter = field(default_factory=Counter)
    languages_filter: dict[str, str] = field(default_factory=dict)
    metric: str = DEFAULT_METRIC
    claims: list[Claim] = field(default_factory=list)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def _clean(folder: Path) -> None:
    for pattern in OWN_FILES:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink()


def _write_figure2_csv(data: list[figures.FractionCurves], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "init", "fraction", "mean", "std", "n", "seeds"])
        for panel in data:
            for init, points in panel.curves.items():
                for fraction, cell in points:
                    writer.writerow([panel.dataset, init, fraction, cell.mean, "" if cell.std is None else cell.std,
                                     cell.n, ";".join(cell.seeds)])
    return path


@dataclass
class ReportContext:
    """Everything the report's sections read: built once by `build_report`, then only read."""

    result: ReportResult
    used: list[TrialRecord]  # the FINISHED trial records, projected on the compared metric
    formats: tuple[str, ...]
    experiments: list[str]
    tracking_uri: str
    teacher_rows: list
    fig2_data: list[figures.FractionCurves]
    fig3_groups: dict
    fig_paths: dict[str, Path | None] = field(default_factory=dict)  # only what was really drawn
    searched: list[tuple] = field(default_factory=list)  # (group, png, csv) of each sweep that sampled fields

    @property
    def words(self) -> str:
        return METRIC_WORDS[self.result.metric]

    @property
    def csv(self) -> bool:
        return "csv" in self.formats


def build_report(  # the keyword options of `kdtune report` (and its tests), each with a default
    records: list[TrialRecord],
    out: Path,
    formats: tuple[str, ...] = FORMATS,
    history: figures.HistoryFn | None = None,
    experiments: list[str] | None = None,
    tracking_uri: str = "",
    languages_filter: dict[str, str] | None = None,
    metric: str = DEFAULT_METRIC,
    teachers: list[TrialRecord] | None = None,
) -> ReportResult:
    """Write the report for `records` (trial runs of any status) into `out`, comparing `metric`;
    `teachers` (teacher runs of the same experiments) fill the Teachers section and teachers.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    result = ReportResult(folder=out, metric=metric)
    result.status_counts = Counter(r.status for r in records)
    used = project([r for r in records if r.status == USED_STATUS], metric)
    result.tables = all_tables(used)
    result.languages_filter = dict(languages_filter or DEFAULT_FILTER)
    result.languages = language_tables(used, result.languages_filter)
    ctx = ReportContext(result, used, tuple(formats), experiments or [], tracking_uri,
                        teacher_table.teacher_rows(teachers or []), figures.fraction_curves(used),
                        figures.loss_groups(used))
    result.claims = claims(result.tables, ctx.fig2_data)
    _draw_figures(ctx, history)  # first: the markdown links only what was really drawn
    if ctx.csv:
        _write_csvs(ctx)
    for group in search.search_groups(used, metric):
        png = search.draw(group, out / f"search_{group.safe}.png") if _want_png(ctx) else None
        table = search.write_csv(group, out / f"search_{group.safe}.csv") if ctx.csv else None
        result.files += [p for p in (png, table) if p]
        ctx.searched.append((group, png, table))
    if "md" in formats:
        path = out / "report.md"
        path.write_text(markdown(ctx), encoding="utf-8")
        result.files.insert(0, path)
    return result


def _want_png(ctx: ReportContext) -> bool:
    return "png" in ctx.formats and figures.have_matplotlib()


def _draw_figures(ctx: ReportContext, history: figures.HistoryFn | None) -> None:
    result, out = ctx.result, ctx.result.folder
    if "png" in ctx.formats and not figures.have_matplotlib():
        result.warnings.append("matplotlib is not installed (pip install 'kdtune[report]'): PNG figures skipped")
    if not _want_png(ctx):
        return
    metric_name = ctx.words.split(" ")[0]
    paths = ctx.fig_paths
    if ctx.fig2_data:
        paths["figure2"] = figures.draw_figure2(ctx.fig2_data, out / "figure2.png", FIGURE_CONTEXT, metric_name)
    if ctx.fig3_groups and history is not None:
        run_ids = sorted({rid for by_init in ctx.fig3_groups.values() for ids in by_init.values() for rid in ids})
        paths["figure3"] = figures.draw_figure3(
            ctx.fig3_groups, history(run_ids, "train_loss"), out / "figure3.png", FIGURE_CONTEXT
        )
    for lang_table in result.languages:
        if lang_table.values:
            name = f"languages_{_safe(lang_table.dataset)}"
            paths[name] = figures.draw_languages(lang_table, out / f"{name}.png", _filter_text(lang_table.filter),
                                                 metric_name)
    result.files += [p for p in paths.values() if p]


def _write_csvs(ctx: ReportContext) -> None:
    result, out = ctx.result, ctx.result.folder
    for table in result.tables:
        if table.n_runs:
            result.files.append(render.write_table_csv(table, out / f"{table.name}.csv"))
    if ctx.fig2_data:
        result.files.append(_write_figure2_csv(ctx.fig2_data, out / "figure2.csv"))
    for lang_table in result.languages:
        if lang_table.values:
            result.files.append(render.write_language_csv(lang_table, out / f"languages_{_safe(lang_table.dataset)}.csv"))
    if ctx.used:
        result.files.append(_write_runs_csv(ctx.used, out / "runs.csv"))
    if ctx.teacher_rows:
        result.files.append(teacher_table.write_csv(ctx.teacher_rows, out / "teachers.csv"))
    if result.claims:
        result.files.append(claims_section.write_csv(result.claims, out / "claims.csv"))


RUN_PARAMS = ("dataset", "init", "layers", "hidden", "kd", "train_partition", "eval_partition", "teacher_partition",
              "languages", "fraction", "epochs", "seed", "metric")


def _write_runs_csv(used: list[TrialRecord], path: Path) -> Path:
    """One row per FINISHED trial: its setting and both F1s (test, teacher, majority baseline), so
    every per-seed claim can be checked from the file. Empty where a run predates a metric."""
    def value(rec: TrialRecord, stem: str, metric: str) -> str:
        for name in (metric_name(stem, metric), metric_name(stem, LEGACY_NAMES[metric])):
            if name in rec.metrics:
                return f"{rec.metrics[name]:.6f}"
        return ""

    stems = FINAL_STEMS
    header = ["run_id", "run_name", *RUN_PARAMS, *(metric_name(s, m) for s in stems for m in METRICS)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for rec in sorted(used, key=lambda r: r.run_name or r.run_id):
            writer.writerow([rec.run_id, rec.run_name, *(rec.params.get(p, "") for p in RUN_PARAMS),
                             *(value(rec, s, m) for s in stems for m in METRICS)])
    return path


def records_from_runs_csv(path: Path) -> list[TrialRecord]:
    """FINISHED trial records back from a report's runs.csv: the params and final scores it holds,
    so a committed reproduction can be reported again without the MLflow store that produced it.
    What the file lacks stays out: loss curves (Figure 3), per-language scores, other params."""
    scores = [metric_name(s, m) for s in FINAL_STEMS for m in METRICS]
    records = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"run_id", "dataset", "init", "seed"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(f"{path}: not a kdtune runs.csv (no column {', '.join(sorted(missing))})")
        for row in reader:
            params = {k: row[k] for k in RUN_PARAMS if row.get(k)}  # an empty field: the run did not log it
            metrics = {k: float(row[k]) for k in scores if row.get(k)}
            records.append(TrialRecord(row["run_id"], row.get("run_name", ""), Path(path).parent.name, USED_STATUS,
                                       params=params, metrics=metrics))
    return records


def _filter_text(filter_: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in filter_.items())


def markdown(ctx: ReportContext) -> str:
    """report.md: its sections in order, each a list of lines from the context."""
    sections = (_header, _tables, _claims, _teachers, _figure2, _figure3, _languages, _searches, _warnings)
    lines = [line for section in sections for line in section(ctx)]
    return "\n".join(lines).rstrip() + "\n"


def _header(ctx: ReportContext) -> list[str]:
    result, experiments = ctx.result, ctx.experiments
    counts = result.status_counts
    skipped = {s: n for s, n in sorted(counts.items()) if s != USED_STATUS}
    skipped_text = ", ".join(f"{n} {s}" for s, n in skipped.items()) if skipped else "none"
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# kdtune report: {', '.join(experiments) or 'runs'}",
        "",
        f"- Experiment(s): {', '.join(f'`{e}`' for e in experiments)}; tracking URI: `{ctx.tracking_uri}`",
        f"- Generated {now} by `kdtune report`",
        f"- Trial runs: {sum(counts.values())}; FINISHED (used): {counts.get(USED_STATUS, 0)}; "
        f"skipped: {skipped_text}",
    ]
    accounted = set().union(*(t.run_ids for t in result.tables), *(lt.run_ids for lt in result.languages))
    accounted |= {r.run_id for r in figures.figure_runs(ctx.used)}
    unused = [r for r in ctx.used if r.run_id not in accounted]
    if unused:
        names = ", ".join(f"`{r.run_name or r.run_id}`" for r in unused[:5]) + (", ..." if len(unused) > 5 else "")
        lines.append(f"- FINISHED runs that match no table or figure: {len(unused)} ({names})")
    return lines + ["", INTRO.format(metric=ctx.words), ""]


def _tables(ctx: ReportContext) -> list[str]:
    lines, omitted = [], []
    for table in ctx.result.tables:
        if not table.n_runs:
            omitted.append(table)
            continue
        lines += [f"## {table.title}", "", f"Runs: {table.n_runs}. Selection: {table.selection}.", ""]
        lines += [render.table_markdown(table), ""]
        lines += [f"- {note}" for note in table.notes]
        empty = render.datasets_without_runs(table)
        if empty and len(empty) < len({c.dataset for c in table.columns}):
            where = f" (the paper's numbers for them are in [{table.name}.csv]({table.name}.csv))" if ctx.csv else ""
            lines.append(f"- No runs for {', '.join(empty)} in this table: columns left out{where}.")
        if ctx.csv:
            lines.append(f"- Data: [{table.name}.csv]({table.name}.csv)")
        lines.append("")
    if omitted:
        lines += ["## Tables without runs", ""]
        lines += [f"- {table.title}: no FINISHED run matches ({table.selection})." for table in omitted]
        lines.append("")
    return lines


def _claims(ctx: ReportContext) -> list[str]:
    selected_by = Counter(r.params.get("metric", LEGACY_METRIC) for r in ctx.used)
    return claims_section.markdown(ctx.result.claims, ctx.words, selected_by, ctx.csv)


def _teachers(ctx: ReportContext) -> list[str]:
    return teacher_table.markdown(ctx.teacher_rows, ctx.csv)


def _figure2(ctx: ReportContext) -> list[str]:
    words, path = ctx.words, ctx.fig_paths.get("figure2")
    lines = [f"## Figure 2: test {words} against the amount of training data", ""]
    if path:
        lines += [f"![Figure 2: test {words} against training data fraction]({path.name})", ""]
        data = " Data: [figure2.csv](figure2.csv)." if ctx.csv else ""
        lines.append(f"Run group: {FIGURE_CONTEXT}; error bars: ±1 sample std over seeds.{data}")
    elif not ctx.fig2_data:
        lines.append(f"Not drawn: it needs runs at two or more data fractions ({FIGURE_CONTEXT}).")
    else:
        lines.append("Not drawn: PNG output is off or matplotlib is missing.")
    return lines + [""]


def _figure3(ctx: ReportContext) -> list[str]:
    lines = ["## Figure 3: training loss per step", ""]
    if ctx.fig_paths.get("figure3"):
        lines += [f"![Figure 3: training loss per step, one panel per data fraction]({ctx.fig_paths['figure3'].name})", ""]
        lines.append(f"Run group: {FIGURE_CONTEXT}; line: mean over seeds; band: min to max over seeds.")
    elif not ctx.fig3_groups:
        lines.append(f"Not drawn: no run matches ({FIGURE_CONTEXT}).")
    elif "figure3" in ctx.fig_paths:
        lines.append("Not drawn: the runs logged no `train_loss` history.")
    else:
        lines.append("Not drawn: PNG output is off or matplotlib is missing.")
    return lines + [""]


def _languages(ctx: ReportContext) -> list[str]:
    result, words, lines = ctx.result, ctx.words, []
    for lang_table in result.languages:
        if not lang_table.values:
            continue
        name = f"languages_{_safe(lang_table.dataset)}"
        lines += [f"## Per-language test {words}: {lang_table.dataset}", ""]
        lines.append(f"Run group: {_filter_text(lang_table.filter)}, full-width students; mean over seeds (%).")
        if lang_table.baseline and "teacher" in lang_table.inits:
            lines.append(
                f" Sorted by the gain from copying ({init_label('teacher')} − {init_label(lang_table.baseline)}); "
                f"▲ marks the {len(lang_table.marked)} language(s) that gain most: {', '.join(lang_table.marked)}."
            )
        lines.append("")
        if ctx.fig_paths.get(name):
            lines += [f"![Per-language F1 on {lang_table.dataset}]({name}.png)", ""]
        lines += ["<details><summary>Per-language table</summary>", "", render.language_markdown(lang_table), "",
                  "</details>", ""]
    if not any(lt.values for lt in result.languages):
        lines += [f"## Per-language test {words}", "", f"No run of the chosen group logged `{heldout_metric(result.metric)}/<language>` metrics "
                  f"({_filter_text(result.languages_filter)}).", ""]
    return lines


def _searches(ctx: ReportContext) -> list[str]:
    return [line for searched in ctx.searched for line in search.section(*searched)]


def _warnings(ctx: ReportContext) -> list[str]:
    warnings = ctx.result.warnings
    return ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""] if warnings else []
